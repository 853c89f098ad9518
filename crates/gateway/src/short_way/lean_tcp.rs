//! A plain TCP connection as the gateway serves it: the socket, the bytes put back in front
//! of it, and its socket facts — without the bookkeeping of pingora's l4 stream on every poll.
//!
//! pingora's l4 stream times how long each read and write waits (two clock reads per read
//! that has to wait: one when it first returns pending, one when it completes) and passes
//! every read and write through a write buffer layer, even when that buffer is off. Nothing
//! in the gateway reads those timings, and with one read and one write per request on each
//! side that bookkeeping was a measurable part of the plain path's work. Both the client's
//! connections (after `placement.rs` registers them) and the short way's upstream connections
//! are this type; HTTPS clients stay pingora's l4 stream, which its TLS acceptor requires.

use super::rewound::{in_front, put_back_io};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct LeanTcp {
    socket: TcpStream,
    /// Bytes put back, read out before anything from the socket.
    first: Bytes,
    socket_digest: Option<Arc<SocketDigest>>,
    proxy_digest: Option<Arc<ProxyDigest>>,
    established: SystemTime,
}

impl LeanTcp {
    /// The connection of `accepted` (a plain l4 stream nothing has been read from), registered
    /// with this thread's reactor: a duplicate of its descriptor, with the socket facts looked
    /// up by the new descriptor. The caller drops `accepted` (closing the original descriptor
    /// and removing its registration); socket options live on the socket and stay.
    pub fn duplicate(accepted: &L4Stream) -> io::Result<LeanTcp> {
        // SAFETY: the descriptor belongs to `accepted`, which is alive for the whole borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(accepted.as_raw_fd()) };
        // Same open socket, so already non-blocking (a flag of the socket, not the descriptor).
        let socket = TcpStream::from_std(std::net::TcpStream::from(fd.try_clone_to_owned()?))?;
        // The socket facts by the new descriptor (the old one's number may be reused once
        // closed).
        let socket_digest = Some(Arc::new(SocketDigest::from_raw_fd(socket.as_raw_fd())));
        Ok(LeanTcp {
            socket,
            first: Bytes::new(),
            socket_digest,
            proxy_digest: accepted.get_proxy_digest(),
            established: accepted.established_ts,
        })
    }

    /// pingora's l4 stream of the same connection, for its TLS acceptor: nothing may have
    /// been read (or put back) yet.
    pub fn into_l4(self) -> L4Stream {
        debug_assert!(
            self.first.is_empty(),
            "a handshake starts with the first byte"
        );
        let fd = self.socket.as_raw_fd();
        let mut l4 = L4Stream::from(self.socket);
        l4.set_socket_digest(SocketDigest::from_raw_fd(fd));
        if let Some(digest) = self.proxy_digest.and_then(|d| Arc::try_unwrap(d).ok()) {
            l4.set_proxy_digest(digest);
        }
        l4.established_ts = self.established;
        l4
    }

    /// Puts `bytes` back in front of whatever is still held, to be read first.
    pub fn rewind(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.first = in_front(bytes, &self.first);
        }
    }
}

/// A new plain connection (a pingora l4 stream nothing has been read from) registered with
/// this thread's reactor, as a [`LeanTcp`] (see [`LeanTcp::duplicate`]); any other stream
/// (TLS), or when the duplicate cannot be made (out of descriptors, say), as it is.
pub fn registered_here(stream: Stream) -> Stream {
    let Some(l4) = stream.as_any().downcast_ref::<L4Stream>() else {
        return stream;
    };
    match LeanTcp::duplicate(l4) {
        Ok(lean) => Box::new(lean),
        Err(_) => stream,
    }
}

impl AsRawFd for LeanTcp {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

put_back_io!(LeanTcp, socket);

#[async_trait]
impl Shutdown for LeanTcp {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            log::debug!("failed to shut down a connection: {e}");
        }
    }
}

impl UniqueID for LeanTcp {
    fn id(&self) -> UniqueIDType {
        self.socket.as_raw_fd() as UniqueIDType
    }
}

impl Ssl for LeanTcp {}

impl GetTimingDigest for LeanTcp {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest {
            established_ts: self.established,
            ..Default::default()
        })]
    }
}

impl GetProxyDigest for LeanTcp {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.proxy_digest.clone()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.proxy_digest = Some(Arc::new(digest));
    }
}

impl GetSocketDigest for LeanTcp {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.socket_digest.clone()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.socket_digest = Some(Arc::new(digest));
    }
}

/// As pingora's l4 stream peeks (for the h2c preface): the bytes are read and put back.
#[async_trait]
impl Peek for LeanTcp {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.read_exact(buf).await?;
        self.rewind(buf);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::LeanTcp;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use pingora::protocols::{GetSocketDigest, Peek};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (LeanTcp, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (far, near) = tokio::join!(far, listener.accept());
        let (near, peer) = near.unwrap();
        let accepted = L4Stream::from(near);
        let lean = LeanTcp::duplicate(&accepted).unwrap();
        drop(accepted);
        let digest = lean.get_socket_digest().unwrap();
        assert_eq!(digest.peer_addr().unwrap().as_inet(), Some(&peer));
        (lean, far.unwrap())
    }

    /// The duplicate still carries the connection after the original descriptor is closed, in
    /// both directions, and what is put back is read first, the last put back first of all.
    #[tokio::test]
    async fn the_duplicate_carries_the_connection_and_reads_what_was_put_back_first() {
        let (mut lean, mut far) = pair().await;
        far.write_all(b"world").await.unwrap();
        let mut got = [0u8; 5];
        lean.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");

        lean.rewind(b"lo, ");
        lean.rewind(b"hel");
        far.write_all(b"again").await.unwrap();
        let mut got = [0u8; 12];
        lean.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello, again");

        lean.write_all(b"answer").await.unwrap();
        lean.flush().await.unwrap();
        let mut got = [0u8; 6];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
    }

    /// A peek leaves the bytes to be read, as pingora's l4 stream does.
    #[tokio::test]
    async fn peeked_bytes_are_read_again() {
        let (mut lean, mut far) = pair().await;
        far.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let mut peeked = [0u8; 3];
        assert!(lean.try_peek(&mut peeked).await.unwrap());
        assert_eq!(&peeked, b"PRI");
        let mut got = [0u8; 14];
        lean.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PRI * HTTP/2.0");
    }
}

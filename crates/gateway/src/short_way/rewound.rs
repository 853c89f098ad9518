//! A TLS stream that can put back the bytes read from it, for pingora to read again.
//!
//! The keep-alive loop reads each request's first bytes itself to see whether the short way
//! takes the request. A plain TCP stream has a rewind buffer of its own (pingora's l4 stream);
//! a TLS stream does not, so the bytes the short way leaves go back into this wrapper, which
//! reads them out first and passes everything else — writes, TLS and socket facts, identity —
//! to the stream inside.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Rewound {
    /// Bytes put back, read out before anything from `inner`.
    first: Bytes,
    inner: Stream,
}

impl Rewound {
    /// `stream` as a rewindable one: itself if it is one already and holds nothing put back
    /// (so wrappers do not nest request after request), else wrapped.
    pub fn of(stream: Stream) -> Result<Box<Rewound>, Stream> {
        if !stream.as_any().is::<Rewound>() {
            return Ok(Box::new(Rewound {
                first: Bytes::new(),
                inner: stream,
            }));
        }
        match stream.into_any().downcast::<Rewound>() {
            Ok(rewound) if rewound.first.is_empty() => Ok(rewound),
            // Bytes still put back: pingora's to read, as they are.
            Ok(rewound) => Err(rewound),
            Err(_) => unreachable!("checked to be a Rewound above"),
        }
    }

    /// Puts `bytes` back to be read first.
    pub fn rewind(&mut self, bytes: &[u8]) {
        debug_assert!(self.first.is_empty(), "one put-back at a time");
        self.first = Bytes::copy_from_slice(bytes);
    }

    /// `stream` with `bytes` in front of whatever it holds: wrapped, unless it is a wrapper
    /// already.
    pub fn put_back(stream: Stream, bytes: &[u8]) -> Box<Rewound> {
        let (inner, held) = if stream.as_any().is::<Rewound>() {
            match stream.into_any().downcast::<Rewound>() {
                Ok(rewound) => (rewound.inner, rewound.first),
                Err(_) => unreachable!("checked to be a Rewound above"),
            }
        } else {
            (stream, Bytes::new())
        };
        Box::new(Rewound {
            first: in_front(bytes, &held),
            inner,
        })
    }
}

/// `bytes` followed by `held`: bytes put back go in front of those still waiting to be read.
pub(super) fn in_front(bytes: &[u8], held: &Bytes) -> Bytes {
    if held.is_empty() {
        return Bytes::copy_from_slice(bytes);
    }
    let mut first = Vec::with_capacity(bytes.len() + held.len());
    first.extend_from_slice(bytes);
    first.extend_from_slice(held);
    first.into()
}

/// `AsyncRead` and `AsyncWrite` for a type with bytes put back in a `first: Bytes` field and
/// the stream they came from in `$inner`: reads take the put-back bytes first, everything else
/// goes to `$inner` (shared by [`Rewound`] and `LeanTcp`).
macro_rules! put_back_io {
    ($ty:ty, $inner:ident) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.first.is_empty() {
                    return std::pin::Pin::new(&mut self.$inner).poll_read(cx, buf);
                }
                let n = self.first.len().min(buf.remaining());
                buf.put_slice(&self.first[..n]);
                bytes::Buf::advance(&mut self.first, n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$inner).poll_shutdown(cx)
            }
        }
    };
}
pub(super) use put_back_io;

put_back_io!(Rewound, inner);

#[async_trait]
impl Shutdown for Rewound {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Rewound {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Rewound {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Rewound {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Rewound {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Rewound {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Peeking is not offered (pingora peeks only plain streams, for the h2c preface).
#[async_trait]
impl Peek for Rewound {}

#[cfg(test)]
mod tests {
    use super::Rewound;
    use pingora::protocols::Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn put_back_bytes_are_read_first_and_wrappers_do_not_nest() {
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(
            tokio::net::TcpStream::connect(listener_addr().await)
                .await
                .unwrap(),
        ));
        let mut rewound = Rewound::of(stream).ok().unwrap();
        rewound.rewind(b"GET / HT");
        let stream: Stream = rewound;
        // Bytes still put back: the same wrapper comes back, as a stream for pingora.
        let mut stream = Rewound::of(stream).unwrap_err();
        let mut got = [0u8; 8];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HT");
        // Read out: it is taken as it is, not wrapped again, and writes go through.
        let rewound = Rewound::of(stream).ok().unwrap();
        assert!(!rewound.inner.as_any().is::<Rewound>());
        let mut stream: Stream = rewound;
        stream.write_all(b"x").await.unwrap();
    }

    /// However the reader's buffers cut them, the put-back bytes come first and whole, then
    /// the stream's own.
    #[tokio::test]
    async fn any_read_sizes_see_the_put_back_bytes_then_the_stream() {
        use tokio::io::AsyncRead;
        let head = b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\n\r\n";
        for put_back in [0, 1, 7, head.len()] {
            for read_size in [1, 2, 5, 64] {
                let (mut far, near) = tokio::io::duplex(256);
                far.write_all(&head[put_back..]).await.unwrap();
                drop(far);
                let mut rewound = Rewound {
                    first: bytes::Bytes::new(),
                    inner: Box::new(near),
                };
                rewound.rewind(&head[..put_back]);
                let mut seen = Vec::new();
                loop {
                    let mut chunk = vec![0u8; read_size];
                    let mut buf = tokio::io::ReadBuf::new(&mut chunk);
                    std::future::poll_fn(|cx| {
                        std::pin::Pin::new(&mut rewound).poll_read(cx, &mut buf)
                    })
                    .await
                    .unwrap();
                    if buf.filled().is_empty() {
                        break;
                    }
                    seen.extend_from_slice(buf.filled());
                }
                assert_eq!(seen, head, "put back {put_back}, reads of {read_size}");
            }
        }
    }

    #[tokio::test]
    async fn bytes_put_back_go_in_front_of_those_still_held() {
        let (mut far, near) = tokio::io::duplex(256);
        far.write_all(b" HTTP/1.1\r\n").await.unwrap();
        drop(far);
        // A stream that is no wrapper is wrapped; a wrapper is not wrapped again.
        let held = Rewound::put_back(Box::new(near), b"/x");
        let rewound = Rewound::put_back(held, b"GET ");
        assert!(!rewound.inner.as_any().is::<Rewound>());
        let mut stream: Stream = rewound;
        let mut seen = String::new();
        stream.read_to_string(&mut seen).await.unwrap();
        assert_eq!(seen, "GET /x HTTP/1.1\r\n");
    }

    async fn listener_addr() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink).await;
        });
        addr
    }
}

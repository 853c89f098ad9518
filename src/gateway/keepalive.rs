//! HTTP/1 keep-alive connections that cost almost nothing while idle.
//!
//! pingora starts a request's processing (a boxed future sized for the whole proxy state
//! machine, ~30 KB, plus header buffers) before the request's first byte arrives, so every idle
//! keep-alive connection holds one: ~43 KB per connection, 400+ MiB at 10,000 idle clients.
//! [`LeanKeepAlive`] runs the HTTP/1 connection loop itself and waits for the next request's
//! first byte with a future of a few hundred bytes, in a task of its own; only then does it hand
//! the request to pingora. Behaviour is pingora's own loop (keep-alive 60 s, request limit, reuse
//! of the persistent settings). HTTP/2 and h2c go to pingora unchanged. TLS streams cannot peek,
//! so an idle HTTP/1 connection over TLS still holds pingora's request state (but not its task).

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// pingora's idle timeout between requests on a keep-alive connection.
const KEEPALIVE: Duration = Duration::from_secs(60);

pub struct LeanKeepAlive<A> {
    app: Arc<A>,
}

impl<A> LeanKeepAlive<A> {
    pub fn new(app: A) -> Self {
        LeanKeepAlive { app: Arc::new(app) }
    }
}

/// Waits until the client sends the next request's first byte. `false`: the client closed the
/// connection, the read failed, or it stayed idle past the keep-alive timeout. Idle connections
/// left at shutdown are closed with the server, as pingora's own would be.
async fn next_request_arrives(stream: &mut Stream) -> bool {
    let mut first = [0u8; 1];
    // `Ok(false)`: this stream cannot peek, so pingora waits for the request itself.
    matches!(
        tokio::time::timeout(KEEPALIVE, stream.try_peek(&mut first)).await,
        Ok(Ok(_))
    )
}

impl<A> LeanKeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// pingora's HTTP/1 connection loop, waiting for each request outside pingora's state.
    async fn serve_http1(self: Arc<Self>, mut stream: Stream, shutdown: ShutdownWatch) {
        let mut persistent = None;
        loop {
            if !next_request_arrives(&mut stream).await {
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                // Carries the keep-alive state and remaining request budget of the connection.
                Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
                None => {
                    // Finish the first request, then close, when the server is going away.
                    let down = *shutdown.borrow();
                    session.set_keepalive((!down).then_some(KEEPALIVE.as_secs()));
                    let limit = self
                        .app
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit);
                    session.set_keepalive_reuses_remaining(limit);
                }
            }
            let Some(reused) = self.app.process_new_http(session, &shutdown).await else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = next;
            persistent = settings;
        }
    }
}

#[async_trait]
impl<A> ServerApp for LeanKeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let other = self
            .app
            .server_options()
            .is_some_and(|o| o.h2c || o.force_custom)
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2 | ALPN::Custom(_))
            );
        if other {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        // pingora's connection task is sized for its TLS handshake (~18 KB) and lives as long as
        // the connection: the connection moves to a task of a few hundred bytes instead.
        // On the current thread's runtime: where pingora placed the connection.
        tokio::spawn(self.clone().serve_http1(stream, shutdown.clone()));
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

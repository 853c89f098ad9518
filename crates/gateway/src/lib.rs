//! The pingora glue: the server ([`server`]), the per-config runtime ([`runtime`]), the routing
//! table ([`routes`]) → the hook file ([`proxy`]) → one handler module per route class, and the
//! short way for plain GETs ([`short_way`]), and the access log ([`access_log`]).

pub mod access_log;
mod contract;
mod filtered;
mod forward;
mod h1_fields;
mod login;
mod params;
mod proxy;
mod request;
mod request_id;
mod respond;
mod routes;
mod runtime;
mod server;
mod short_way;
mod upstream;
#[cfg(any(test, feature = "fuzzing"))]
pub use short_way::fuzz as short_way_fuzz;
pub mod tls;
mod write;

pub use routes::{route, Class, Route};
pub use runtime::{Runtime, State};
pub use server::run;

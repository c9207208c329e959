//! HTTP: the connection manager, codec helpers (HTTP/1.1 and HTTP/2),
//! body streaming and local replies.

pub mod body;
pub mod codec;
pub mod conn;
pub mod date;
pub mod filters;
pub mod flags;
pub mod grpc;
pub mod h2;
pub mod head;
pub mod local_reply;
pub mod mutate;
pub mod retry;
pub mod upgrade;
pub mod xff;

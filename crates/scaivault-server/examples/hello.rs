//! The ceiling of the read benchmark: a bare axum "hello" on the same stack (tokio, hyper, axum).
//!
//! `cargo run --release -p scaivault-server --example hello -- 127.0.0.1:7300`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7300".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new().route("/", get(|| async { "hello" }));
    #[allow(clippy::print_stdout)]
    {
        println!("listening on http://{}", listener.local_addr()?);
    }
    axum::serve(listener, app).await
}

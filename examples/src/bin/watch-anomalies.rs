//! SDK example: print learning status, then every anomaly as it arrives,
//! resuming by itself after disconnects.
//!
//! `TELLTALE_ADDR=http://127.0.0.1:7443 TELLTALE_TOKEN=... cargo run -p telltale-examples --bin watch-anomalies`,
//! or without a token through the daemon's local admin socket (from outside
//! the watched containers): `TELLTALE_ADDR=unix:///var/lib/telltale/api.sock`.

use anyhow::Result;
use telltale_client::{Client, WatchFilter};
use tokio_stream::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let addr = std::env::var("TELLTALE_ADDR").unwrap_or_else(|_| "http://127.0.0.1:7443".into());
    let client = Client::builder(addr).maybe_token(std::env::var("TELLTALE_TOKEN").ok()).connect().await?;
    for p in client.learning_status(None).await? {
        println!("profile {} ({} behaviours)", p.image, p.behaviours);
    }
    let mut anomalies = client.watch(WatchFilter::default(), 0);
    while let Some(a) = anomalies.next().await {
        let a = a?;
        let an = a.anomaly;
        println!("#{} {} {} in {}: {}", a.sequence, an.event_type, an.id, an.container.id, an.lineage.join(" -> "));
    }
    Ok(())
}

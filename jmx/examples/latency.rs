//! Times warm `getAttribute` calls over one client: `cargo run --release -p jmx-native --example latency --
//! HOST:PORT [CALLS]`. Prints one JSON line with p50/p99 (microseconds) and calls per second.
//! Used by `scripts/bench-jmx`, beside the same loop run by a Java JMX client.

use std::time::Instant;

use jmx::{JmxClient, JmxConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let service = args.next().ok_or("usage: latency HOST:PORT [CALLS]")?;
    let calls: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let client = JmxClient::connect(JmxConfig::from_service(&service)?).await?;
    for _ in 0..500 {
        client
            .get_attribute("java.lang:type=Runtime", "Uptime")
            .await?;
    }
    let mut micros = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        client
            .get_attribute("java.lang:type=Runtime", "Uptime")
            .await?;
        micros.push(call.elapsed().as_secs_f64() * 1e6);
    }
    let total = started.elapsed().as_secs_f64();
    micros.sort_by(f64::total_cmp);
    let pick = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "{{\"client\":\"daedalus jmx (Rust)\",\"calls\":{calls},\"p50_us\":{:.0},\"p99_us\":{:.0},\"calls_per_s\":{:.0}}}",
        pick(0.50),
        pick(0.99),
        calls as f64 / total
    );
    client.close().await?;
    Ok(())
}

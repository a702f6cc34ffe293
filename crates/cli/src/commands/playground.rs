//! `simplyload playground …`: the demo schema and realistic data.

use clap::Subcommand;
use simplyload_core::Result;
use simplyload_playground::SeedCounts;
use simplyload_postgres::PostgresSource;

#[derive(Subcommand, Debug)]
pub enum PlaygroundCommand {
    /// Create the playground schema (users, orders, events); idempotent
    Schema {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Insert baseline rows with COPY
    Seed {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, env = "INITIAL_USERS", default_value_t = SeedCounts::DEFAULT.users)]
        users: u64,
        #[arg(long, env = "INITIAL_ORDERS", default_value_t = SeedCounts::DEFAULT.orders)]
        orders: u64,
        #[arg(long, env = "INITIAL_EVENTS", default_value_t = SeedCounts::DEFAULT.events)]
        events: u64,
        /// Multiplies every count
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Random seed: the same seed gives the same rows
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Compare each stream's source table with its destination table, row by row
    Reconcile(super::reconcile::Args),
}

pub async fn run(config: Option<&std::path::Path>, cmd: PlaygroundCommand) -> Result<u8> {
    match cmd {
        PlaygroundCommand::Reconcile(args) => return super::reconcile::run(config, args).await,
        PlaygroundCommand::Schema { database_url } => {
            let client = PostgresSource::from_url("playground", &database_url)?.connect().await?;
            simplyload_playground::create_schema(&client).await?;
            println!("playground schema is in place");
        }
        PlaygroundCommand::Seed { database_url, users, orders, events, scale, seed } => {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(simplyload_core::Error::config(format!("--scale {scale}: must be a positive number")));
            }
            let s = |n: u64| (n as f64 * scale).round() as u64;
            let counts = SeedCounts { users: s(users), orders: s(orders), events: s(events) };
            let client = PostgresSource::from_url("playground", &database_url)?.connect().await?;
            simplyload_playground::create_schema(&client).await?;
            let started = std::time::Instant::now();
            simplyload_playground::seed(&client, counts, seed).await?;
            println!(
                "inserted {} users, {} orders, {} events in {:.1}s",
                counts.users,
                counts.orders,
                counts.events,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(0)
}

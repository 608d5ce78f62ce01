//! Measurement 6: History: command latency on a `Stock` with years of history (100,000 past events, written
//! as the store would, with a snapshot of its last state) against a fresh one.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use etal_app::Ctx;
use etal_domain::ids::{OrderId, ProductId, SaleId};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::Actor;
use etal_store::EsAggregate;

use crate::bench::memstore::{Streams, Writer};
use crate::bench::p50_p99;
use crate::bench::report::Report;
use crate::world::World;

async fn history(world: &World, product: ProductId, events: usize) -> anyhow::Result<()> {
    let mut w = Writer::new(world.db.pool.clone(), |_| {});
    let mut streams = Streams::<Stock>::default();
    let id = product.to_string();
    let mut at = Utc.with_ymd_and_hms(2016, 1, 4, 9, 0, 0).unwrap();
    let mut written = 0;
    while written < events {
        let sale = SaleId::new();
        for _ in 0..50 {
            let order = OrderId::new();
            streams
                .exec(
                    &mut w,
                    &id,
                    StockCommand::Reserve {
                        product,
                        reservation: order,
                        sale,
                        quantity: 1,
                        expires_at: at,
                    },
                    Actor::system(),
                    at,
                )
                .await?;
            streams
                .exec(
                    &mut w,
                    &id,
                    StockCommand::Confirm { reservation: order },
                    Actor::system(),
                    at,
                )
                .await?;
            written += 2;
        }
        streams
            .exec(
                &mut w,
                &id,
                StockCommand::Deliver { sale, at },
                Actor::system(),
                at,
            )
            .await?;
        written += 1;
        at += chrono::Duration::days(2);
        w.maybe_flush().await?;
    }
    w.finish().await?;
    let (state, last) = streams.map.remove(&id).expect("stream");
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, state_version, payload, taken_at) \
         VALUES ('stock', $1, $2, $3, $4, now())",
    )
    .bind(&id)
    .bind(last)
    .bind(<Stock as EsAggregate>::STATE_VERSION)
    .bind(serde_json::to_value(&state)?)
    .execute(&world.db.pool)
    .await?;
    Ok(())
}

async fn latencies(
    world: &World,
    product: ProductId,
    commands: usize,
) -> anyhow::Result<Vec<Duration>> {
    let sale = SaleId::new();
    let cc = Ctx::system().plain();
    let mut out = Vec::with_capacity(commands);
    for i in 0..commands {
        let order = OrderId::new();
        let t = Instant::now();
        let cmd = if i % 2 == 0 {
            StockCommand::Reserve {
                product,
                reservation: order,
                sale,
                quantity: 1,
                expires_at: world.now(),
            }
        } else {
            StockCommand::Release { reservation: order }
        };
        world.app.exec::<Stock>(product, cmd, &cc).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

pub async fn run(report: &mut Report, events: usize, commands: usize) -> anyhow::Result<()> {
    let world = World::new().await;
    let old = ProductId::new();
    let fresh = ProductId::new();
    history(&world, old, events).await?;
    let mut conn = world.db.pool.acquire().await?;
    let (_, last, replayed) =
        etal_store::bus::load_counting::<Stock>(&mut conn, &old.to_string()).await?;
    drop(conn);
    let every = <Stock as EsAggregate>::SNAPSHOT_EVERY;
    let mut lat_old = latencies(&world, old, commands).await?;
    let mut lat_fresh = latencies(&world, fresh, commands).await?;
    let (o50, o99) = p50_p99(&mut lat_old);
    let (f50, f99) = p50_p99(&mut lat_fresh);
    crate::bench::drop_db(&world.db).await;
    report.section(
        "6. Cost against history",
        format!(
            "A `Stock` with {last} past events (ten years of weekly sales; a snapshot at its \
             last event, then the bus's own every {every} events; a load replays {replayed} events on top of it) against a new one; \
             {commands} commands each (reserve, release, alternately) through the command bus.\n\n\
             | stream | events before | p50 | p99 |\n|---|---|---|---|\n\
             | with history | {last} | {o50:.2} ms | {o99:.2} ms |\n| fresh | 0 | {f50:.2} ms | {f99:.2} ms |\n"
        ),
    );
    let independent = o50 <= f50 * 1.5 + 0.5;
    report.goal(
        "command cost independent of history",
        "p50 with 100k events within 1.5x of fresh",
        format!("{o50:.2} ms vs {f50:.2} ms"),
        Some(independent),
    );
    Ok(())
}

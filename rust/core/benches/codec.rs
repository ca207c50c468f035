//! `cargo bench -p adk-postgres-core`: the JSON codec, and store operations against a real
//! server when `BENCH_DATABASE_URL` is set (skipped, with a message, otherwise).

use std::time::Duration;

use adk_postgres_core::codec::{decode, encode, keep_floats_for_jsonb};
use std::sync::Arc;

use adk_postgres_core::sessions::{AppendOutcome, Expected, NewEvent, SessionKey, Sessions};
use adk_postgres_core::{Database, StoreConfig, StoreOptions};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use postgres_types::Type;

/// A ~1 KB model event as pydantic-core serialises it.
fn event_json(i: usize) -> Vec<u8> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(18);
    format!(
        r#"{{"invocation_id":"inv-{i}","author":"assistant","actions":{{"state_delta":{{"turn":{i},"user:last_turn":{i}}},"artifact_delta":{{}},"requested_auth_configs":{{}},"requested_tool_confirmations":{{}}}},"content":{{"parts":[{{"text":"turn {i}: {text}"}}],"role":"model"}},"id":"ev-{i:08}","timestamp":1732271234.1234567}}"#
    )
    .into_bytes()
}

fn codec(c: &mut Criterion) {
    let json = event_json(1);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("encode_jsonb_1kb", |b| {
        let mut out = BytesMut::with_capacity(2048);
        b.iter(|| {
            out.clear();
            encode(&json, &Type::JSONB, &mut out);
        })
    });
    let mut wire = BytesMut::new();
    encode(&json, &Type::JSONB, &mut wire);
    group.bench_function("decode_jsonb_1kb", |b| {
        b.iter(|| decode(&Type::JSONB, &wire).unwrap())
    });
    let with_exponents = br#"{"a":1e+16,"b":[1.5e+300,2e+20],"s":"1e+16"}"#;
    group.bench_function("keep_floats_rewrite", |b| {
        b.iter(|| keep_floats_for_jsonb(with_exponents))
    });
    group.finish();
}

fn store_ops(c: &mut Criterion) {
    let Ok(url) = std::env::var("BENCH_DATABASE_URL") else {
        eprintln!("BENCH_DATABASE_URL is not set: skipping the store benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("bench_{}", std::process::id());
    let options = StoreOptions {
        schema: schema.clone(),
        pool_size: 4,
        ..StoreOptions::default()
    };
    let db = {
        let _guard = rt.enter();
        Database::new(StoreConfig::parse(&url, options).expect("BENCH_DATABASE_URL")).unwrap()
    };
    rt.block_on(db.migrate()).expect("migrate");
    let store = Sessions::new(Arc::new(db));
    let key = SessionKey {
        app_name: "bench",
        user_id: "u",
        session_id: "s",
    };
    rt.block_on(store.create_session(key, b"{}", None, None, 1.7e9))
        .unwrap();
    let mut revision = 0i64;
    let mut n = 0usize;
    let mut group = c.benchmark_group("store");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("append_event", |b| {
        b.iter(|| {
            n += 1;
            let json = event_json(n);
            let id = format!("ev-{n:08}");
            let event = NewEvent {
                event_id: &id,
                invocation_id: "inv",
                timestamp: 1.7e9 + n as f64,
                event_json: &json,
                session_delta: Some(br#"{"turn":1}"#),
                app_delta: None,
                user_delta: Some(br#"{"last_turn":1}"#),
            };
            match rt
                .block_on(store.append_alone(
                    key,
                    Expected {
                        revision,
                        incarnation: None,
                        fence: None,
                        note_invocation: false,
                    },
                    event,
                ))
                .unwrap()
            {
                AppendOutcome::Appended(r) => revision = r,
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    for limit in [10i64, 100] {
        group.bench_with_input(
            BenchmarkId::new("get_session_recent", limit),
            &limit,
            |b, &limit| {
                b.iter(|| {
                    rt.block_on(store.get_session(key, None, Some(limit)))
                        .unwrap()
                })
            },
        );
    }
    group.bench_function("get_session_since_unchanged", |b| {
        b.iter(|| rt.block_on(store.get_session_since(key, revision)).unwrap())
    });
    group.finish();
    // Leave nothing behind.
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .unwrap();
    });
}

criterion_group!(benches, codec, store_ops);
criterion_main!(benches);

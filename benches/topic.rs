//! Topic and pattern parsing and matching: the cost paid per subscribe
//! and per topic creation (publishing never matches patterns).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use fanout::topic::{Filter, TopicName};

fn parse(c: &mut Criterion) {
    c.bench_function("topic/parse quotes.NASDAQ.AAPL", |b| {
        b.iter(|| TopicName::parse(black_box("quotes.NASDAQ.AAPL")))
    });
    c.bench_function("topic/parse pattern quotes.*.>", |b| {
        b.iter(|| Filter::parse(black_box("quotes.*.>")))
    });
}

fn matching(c: &mut Criterion) {
    let topic = TopicName::parse("quotes.NASDAQ.AAPL").unwrap();
    let star = Filter::parse("quotes.NASDAQ.*").unwrap();
    let tail = Filter::parse("quotes.>").unwrap();
    let miss = Filter::parse("scores.>").unwrap();
    c.bench_function("topic/match star", |b| {
        b.iter(|| black_box(&star).matches(black_box(&topic)))
    });
    c.bench_function("topic/match tail", |b| {
        b.iter(|| black_box(&tail).matches(black_box(&topic)))
    });
    c.bench_function("topic/match miss", |b| {
        b.iter(|| black_box(&miss).matches(black_box(&topic)))
    });
}

criterion_group!(benches, parse, matching);
criterion_main!(benches);

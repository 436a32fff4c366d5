//! The baseline for Shoal's search projection: plain tantivy, in this process, on disk, over the
//! same events' searchable text (the string values of their properties, and the name), with the
//! same two-word queries (each word required, as Shoal's parser is set), the top 10 by score and
//! their stored text fetched. No HTTP, no tenant clause, no snippets or counting: the floor
//! that Shoal's `GET /v1/search` is compared with ("≤ in-process tantivy + 2 ms").

use super::figures::{Figure, Figures, System};
use crate::cli::CompareArgs;
use crate::dataset::Dataset;
use anyhow::Result;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{STORED, Schema, TEXT, Value};
use tantivy::{Index, TantivyDocument, doc};

/// String leaves of a flat JSON object's text, joined by spaces.
fn searchable_text(name: &str, properties: &str) -> String {
    let mut text = name.to_owned();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(properties) {
        for value in map.values() {
            if let Some(string) = value.as_str() {
                text.push(' ');
                text.push_str(string);
            }
        }
    }
    text
}

pub fn round(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    let dir = super::process::temp_dir(&args.dir, "tantivy-baseline-")?;
    let mut builder = Schema::builder();
    let text = builder.add_text_field("text", TEXT | STORED);
    let index = Index::create_in_dir(dir.path(), builder.build())?;
    let started = Instant::now();
    let mut writer = index.writer::<TantivyDocument>(64 * 1024 * 1024)?;
    for event in &data.events {
        writer.add_document(doc!(text => searchable_text(event.name, &event.properties)))?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    println!(
        "tantivy: indexed {} events in {:.1} s",
        data.events.len(),
        started.elapsed().as_secs_f64()
    );
    let reader = index.reader()?;
    let searcher = reader.searcher();
    let mut parser = QueryParser::for_index(&index, vec![text]);
    parser.set_conjunction_by_default();
    let mut words = rand::rngs::StdRng::seed_from_u64(args.data.seed + 9);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let warm_up = args.queries / 10;
    for n in 0..args.queries + warm_up {
        let (first, second) = crate::dataset::search_terms(&mut words);
        let started = Instant::now();
        let query = parser.parse_query(&format!("{first} {second}"))?;
        let top = searcher.search(&query, &TopDocs::with_limit(10).order_by_score())?;
        for (_, address) in top {
            let found: TantivyDocument = searcher.doc(address)?;
            std::hint::black_box(found.get_first(text).and_then(|v| v.as_str().map(str::len)));
        }
        if n >= warm_up {
            histogram.saturating_record((started.elapsed().as_micros() as u64).max(1));
        }
    }
    figures.latency(
        Figure::SearchP50,
        Figure::SearchP99,
        System::Tantivy,
        round,
        &histogram,
    );
    println!(
        "tantivy: two-word top-10 p50 {:.2} ms p99 {:.2} ms",
        super::figures::ms(&histogram, 0.5),
        super::figures::ms(&histogram, 0.99)
    );
    Ok(Duration::ZERO)
}

//! Any text as a topic or pattern: parsing never panics, and whatever parses
//! as a pattern answers `matches` and `covers` for any other parsed filter.
#![no_main]

use fanout::topic::{Filter, TopicName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let _ = TopicName::parse(a);
    if let (Ok(fa), Ok(fb)) = (Filter::parse(a), Filter::parse(b)) {
        if let (Filter::Pattern(p), Filter::Exact(t)) = (&fa, &fb) {
            let _ = p.matches(t);
        }
        let _ = fa.covers(&fb);
    }
});

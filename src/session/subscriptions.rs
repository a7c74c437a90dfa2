//! A session's subscriptions, by the text the client used: a sorted vector,
//! so the usual one or two subscriptions cost one small allocation rather
//! than a hash table's (which starts at four slots and a control block).

use crate::topic::Filter;

/// Subscriptions by the text the client used, so unsubscribe finds them.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Sorted by text; at most `limits.max_subscriptions_per_connection` long.
    by_text: Vec<(Box<str>, Filter)>,
}

impl Subscriptions {
    fn find(&self, text: &str) -> Result<usize, usize> {
        self.by_text.binary_search_by(|(t, _)| (**t).cmp(text))
    }

    /// Whether `text` is subscribed.
    pub fn contains(&self, text: &str) -> bool {
        self.find(text).is_ok()
    }

    /// Adds `filter` under `text`; a text already there keeps its filter.
    pub fn insert(&mut self, text: &str, filter: Filter) {
        if let Err(i) = self.find(text) {
            if self.by_text.capacity() == 0 {
                // The first one exactly: most connections never hold a second.
                self.by_text.reserve_exact(1);
            }
            self.by_text.insert(i, (text.into(), filter));
        }
    }

    /// Removes the subscription under `text`.
    pub fn remove(&mut self, text: &str) -> Option<Filter> {
        let i = self.find(text).ok()?;
        Some(self.by_text.remove(i).1)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }

    /// Every subscription's filter.
    pub fn filters(&self) -> impl Iterator<Item = &Filter> {
        self.by_text.iter().map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(t: &str) -> Filter {
        Filter::parse(t).unwrap()
    }

    #[test]
    fn finds_adds_and_removes_by_text() {
        let mut s = Subscriptions::default();
        for t in ["b.x", "a.*", "c.y", "a.*"] {
            s.insert(t, filter(t));
        }
        assert_eq!(s.len(), 3, "a text subscribed twice is held once");
        assert!(s.contains("a.*") && s.contains("b.x") && s.contains("c.y"));
        assert!(!s.contains("a.x"));
        assert!(matches!(s.remove("b.x"), Some(Filter::Exact(_))));
        assert!(s.remove("b.x").is_none());
        assert_eq!(s.filters().count(), 2);
        s.remove("a.*");
        s.remove("c.y");
        assert!(s.is_empty());
    }
}

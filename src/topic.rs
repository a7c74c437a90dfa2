//! Topic names and subscription patterns, checked when they are built.
//!
//! A topic is 1–255 bytes of dot-separated tokens of `[A-Za-z0-9_-:@]`;
//! names starting with `$` belong to the broker. A pattern may use `*`
//! (exactly one token) and `>` (one or more trailing tokens), as in NATS.

use std::fmt;
use std::sync::Arc;

use crate::error::TopicError;

/// The longest topic name or pattern, in bytes.
pub const MAX_TOPIC_BYTES: usize = 255;

/// A validated, exact topic name. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Parses an exact topic name; wildcards are refused.
    pub fn parse(name: &str) -> Result<Self, TopicError> {
        check_length(name)?;
        for (i, token) in name.split('.').enumerate() {
            if token == "*" || token == ">" {
                return Err(TopicError::Wildcard(name.to_owned()));
            }
            check_token(name, token, i == 0)?;
        }
        Ok(TopicName(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the broker's own topics (`$sys.stats`), which clients cannot publish to.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicName({:?})", &*self.0)
    }
}

/// One token of a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<str>),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens.
    Tail,
}

/// A validated subscription pattern holding at least one `*` or `>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Arc<str>,
    tokens: Box<[Token]>,
}

impl Pattern {
    /// The pattern as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` is one the pattern matches. As in MQTT, a pattern opening with a
    /// wildcard does not reach the broker's `$` topics: `>` must not hand every client
    /// `$sys.stats` once a second; `$sys.*` does match it.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_system() && !matches!(self.tokens.first(), Some(Token::Literal(_))) {
            return false;
        }
        let mut names = topic.as_str().split('.');
        for token in self.tokens.iter() {
            match token {
                Token::Tail => return names.next().is_some(),
                Token::One => {
                    if names.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(lit) => {
                    if names.next() != Some(&**lit) {
                        return false;
                    }
                }
            }
        }
        names.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.text)
    }
}

/// What a subscription names: one exact topic or a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Exactly one topic.
    Exact(TopicName),
    /// Every topic the pattern matches.
    Pattern(Pattern),
}

impl Filter {
    /// Parses a subscription: a pattern if any token is `*` or `>`, else an exact topic.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_length(text)?;
        let count = text.split('.').count();
        let mut tokens = Vec::with_capacity(count);
        let mut wild = false;
        for (i, token) in text.split('.').enumerate() {
            tokens.push(match token {
                "*" => {
                    wild = true;
                    Token::One
                }
                ">" if i + 1 == count => {
                    wild = true;
                    Token::Tail
                }
                ">" => return Err(TopicError::TailNotLast(text.to_owned())),
                _ => {
                    check_token(text, token, i == 0)?;
                    Token::Literal(token.into())
                }
            });
        }
        if !wild {
            return Ok(Filter::Exact(TopicName(Arc::from(text))));
        }
        Ok(Filter::Pattern(Pattern {
            text: Arc::from(text),
            tokens: tokens.into_boxed_slice(),
        }))
    }

    /// The filter as the client wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            Filter::Exact(t) => t.as_str(),
            Filter::Pattern(p) => p.as_str(),
        }
    }

    /// Whether `topic` is covered by this filter.
    pub fn matches(&self, topic: &TopicName) -> bool {
        match self {
            Filter::Exact(t) => t == topic,
            Filter::Pattern(p) => p.matches(topic),
        }
    }

    /// Whether every topic `other` can match is also matched by this filter: a
    /// grant of `a.>` allows a subscription to `a.*`, a grant of `a.*` does not
    /// allow `a.>` (it would reach `a.b.c`).
    pub fn covers(&self, other: &Filter) -> bool {
        covers(&self.tokens(), &other.tokens())
    }

    fn tokens(&self) -> Vec<Token> {
        match self {
            Filter::Exact(t) => t.as_str().split('.').map(|s| Token::Literal(s.into())).collect(),
            Filter::Pattern(p) => p.tokens.to_vec(),
        }
    }
}

/// Whether the topics `b` matches are a subset of those `a` matches, token by token.
fn covers(a: &[Token], b: &[Token]) -> bool {
    match (a.first(), b.first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        // `>` takes one or more tokens, and so does anything left of `b`.
        (Some(Token::Tail), Some(_)) => true,
        // `*` takes one token: not a `>` that may stand for several.
        (Some(Token::One), Some(Token::Tail)) => false,
        (Some(Token::One), Some(_)) => covers(&a[1..], &b[1..]),
        (Some(Token::Literal(x)), Some(Token::Literal(y))) if x == y => covers(&a[1..], &b[1..]),
        (Some(Token::Literal(_)), Some(_)) => false,
    }
}

fn check_length(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(name.len()));
    }
    Ok(())
}

fn check_token(name: &str, token: &str, first: bool) -> Result<(), TopicError> {
    // `$` may open the first token only: it marks the broker's own topics.
    let body = match token.strip_prefix('$') {
        Some(rest) if first => rest,
        _ => token,
    };
    if body.is_empty() {
        return Err(TopicError::EmptyToken(name.to_owned()));
    }
    match body
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@')))
    {
        Some(c) => Err(TopicError::BadChar(name.to_owned(), c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::parse(s).unwrap()
    }

    fn pattern(s: &str) -> Filter {
        Filter::parse(s).unwrap()
    }

    #[test]
    fn valid_topics_parse() {
        for name in [
            "quotes.NASDAQ.AAPL",
            "scores.nba.game-42",
            "a",
            "chat.room1",
            "u:1@x",
            "$sys.stats",
        ] {
            assert_eq!(topic(name).as_str(), name);
        }
        assert!(topic("$sys.stats").is_system());
        assert!(!topic("sys.stats").is_system());
    }

    #[test]
    fn invalid_topics_are_refused_with_the_reason() {
        assert_eq!(TopicName::parse(""), Err(TopicError::Empty));
        assert_eq!(TopicName::parse(&"a".repeat(256)), Err(TopicError::TooLong(256)));
        assert!(TopicName::parse(&"a".repeat(255)).is_ok());
        assert!(matches!(TopicName::parse("a..b"), Err(TopicError::EmptyToken(_))));
        assert!(matches!(TopicName::parse(".a"), Err(TopicError::EmptyToken(_))));
        assert!(matches!(TopicName::parse("a."), Err(TopicError::EmptyToken(_))));
        assert!(matches!(TopicName::parse("a b"), Err(TopicError::BadChar(_, ' '))));
        assert!(matches!(TopicName::parse("a/b"), Err(TopicError::BadChar(_, '/'))));
        assert!(matches!(TopicName::parse("a.$b"), Err(TopicError::BadChar(_, '$'))));
        assert!(matches!(TopicName::parse("$"), Err(TopicError::EmptyToken(_))));
        assert!(matches!(TopicName::parse("a.*"), Err(TopicError::Wildcard(_))));
        assert!(matches!(TopicName::parse("a.>"), Err(TopicError::Wildcard(_))));
    }

    #[test]
    fn filters_are_exact_unless_they_hold_a_wildcard() {
        assert_eq!(pattern("a.b"), Filter::Exact(topic("a.b")));
        assert!(matches!(pattern("a.*"), Filter::Pattern(_)));
        assert!(matches!(pattern(">"), Filter::Pattern(_)));
        assert!(matches!(Filter::parse("a.>.b"), Err(TopicError::TailNotLast(_))));
        assert!(matches!(Filter::parse("a.b*"), Err(TopicError::BadChar(_, '*'))));
        assert!(matches!(Filter::parse("a.>b"), Err(TopicError::BadChar(_, '>'))));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        let p = pattern("q.*");
        assert!(p.matches(&topic("q.x")));
        assert!(!p.matches(&topic("q.x.y")));
        assert!(!p.matches(&topic("q")));
        assert!(!p.matches(&topic("r.x")));
        assert!(pattern("*.b.*").matches(&topic("a.b.c")));
        assert!(!pattern("*.b.*").matches(&topic("a.c.c")));
    }

    #[test]
    fn coverage_holds_only_when_every_matched_topic_is_granted() {
        let covers = |a: &str, b: &str| pattern(a).covers(&pattern(b));
        assert!(covers("a.*", "a.b"));
        assert!(covers("a.>", "a.*"));
        assert!(covers("a.>", "a.b.c"));
        assert!(covers("a.>", "a.>"));
        assert!(covers(">", "a.*.>"));
        assert!(covers("a.b", "a.b"));
        assert!(covers("*.b", "a.b"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.*", "a.b.c"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.>", "a"));
        assert!(!covers("a.>", "b.c"));
        assert!(!covers("a.*.c", "a.*.>"));
    }

    #[test]
    fn tail_matches_one_or_more_trailing_tokens() {
        let p = pattern("s.>");
        assert!(p.matches(&topic("s.a")));
        assert!(p.matches(&topic("s.a.b")));
        assert!(!p.matches(&topic("s")));
        assert!(!p.matches(&topic("t.a")));
        assert!(pattern(">").matches(&topic("anything.at.all")));
        assert!(pattern("*.>").matches(&topic("a.b")));
        assert!(!pattern("*.>").matches(&topic("a")));
    }

    #[test]
    fn a_leading_wildcard_does_not_reach_broker_topics() {
        assert!(!pattern(">").matches(&topic("$sys.stats")));
        assert!(!pattern("*.stats").matches(&topic("$sys.stats")));
        assert!(pattern("$sys.*").matches(&topic("$sys.stats")));
        assert!(pattern("$sys.>").matches(&topic("$sys.stats")));
    }
}

//! The shapes' fields: a quote's, a scoreboard's, as trees of [`Node`]s
//! whose numbers ([`Num`]) change with every message.

use super::{Parts, PayloadShape};

/// A number (or a value standing for one) that changes with every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Num {
    /// An integer in `lo..=hi`.
    Int { lo: i64, hi: i64 },
    /// A decimal `n / 10^places` for `n` in `lo..=hi` (MessagePack: a float).
    Dec { lo: i64, hi: i64, places: u8 },
    /// A price: the message's base price (drawn once per message) plus
    /// `lo..=hi` cents, with 2 decimals.
    Price { lo: i64, hi: i64 },
    /// A game clock `"MM:SS"` under 12:00 (a string in both encodings).
    Clock,
    /// The message's intended send time in milliseconds.
    TimeMs,
    /// One of a list of strings (the program's picks: [`PLAYS`] is list 0), by index.
    Pick(u16),
}

/// One field value of a shape.
pub(super) enum Node {
    Obj(Vec<(&'static str, Node)>),
    Arr(Vec<Node>),
    Str(String),
    /// An integer that stays the same (a game id).
    Fixed(i64),
    Num(Num),
    /// The measurement stamp, as a string.
    Stamp,
}

/// The tree of `shape` with `parts` and an optional note.
pub(super) fn tree(shape: PayloadShape, parts: Parts, publisher: u32, note: Option<String>) -> Node {
    let mut fields = match shape {
        PayloadShape::Quote => quote(parts.big, publisher),
        _ => scoreboard(parts.big, parts.small, publisher),
    };
    if let Some(n) = note {
        fields.push(("note", Node::Str(n)));
    }
    Node::Obj(fields)
}

const fn int(lo: i64, hi: i64) -> Node {
    Node::Num(Num::Int { lo, hi })
}

const fn dec(lo: i64, hi: i64, places: u8) -> Node {
    Node::Num(Num::Dec { lo, hi, places })
}

fn text(s: &str) -> Node {
    Node::Str(s.to_string())
}

/// A quote: the core fields, then up to `parts` optional ones, then
/// order-book levels for the rest.
fn quote(parts: usize, publisher: u32) -> Vec<(&'static str, Node)> {
    const SYMBOLS: [&str; 8] = ["ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "HOOLI", "VANDL"];
    // Prices stay near the message's last price: a quote's bid, ask and
    // range differ from it by cents or a few percent, never arbitrarily.
    let near = |lo, hi| Node::Num(Num::Price { lo, hi });
    let price = || near(-400, 400);
    let mut f = vec![
        ("id", Node::Stamp),
        ("symbol", text(SYMBOLS[publisher as usize % SYMBOLS.len()])),
        ("exchange", text("NASDAQ")),
        ("bid", near(-5, -1)),
        ("ask", near(1, 5)),
        ("last", near(0, 0)),
        ("volume", int(100_000, 9_999_999)),
        ("change", dec(-999, 999, 2)),
        ("ts", Node::Num(Num::TimeMs)),
    ];
    let optional = [
        ("bid_size", int(1, 9_999)),
        ("ask_size", int(1, 9_999)),
        ("open", price()),
        ("high", price()),
        ("low", price()),
        ("prev_close", price()),
        ("vwap", near(-150, 150)),
        ("trades", int(1_000, 99_999)),
        ("currency", text("USD")),
    ];
    let extra = parts.min(optional.len());
    f.extend(optional.into_iter().take(extra));
    let levels = parts - extra;
    if levels > 0 {
        let level = |k: usize| {
            let depth = 5 * k as i64;
            Node::Obj(vec![
                ("bid", near(-depth - 9, -depth - 5)),
                ("bid_size", int(1, 9_999)),
                ("ask", near(depth + 5, depth + 9)),
                ("ask_size", int(1, 9_999)),
            ])
        };
        f.push(("book", Node::Arr((0..levels).map(level).collect())));
    }
    f
}

/// A scoreboard of `games` games, teams from a fixed list, and `leaders`
/// player stat lines.
fn scoreboard(games: usize, leaders: usize, publisher: u32) -> Vec<(&'static str, Node)> {
    const TEAMS: [(&str, &str); 16] = [
        ("Harbor City Hawks", "HCH"),
        ("Red Valley Rivets", "RVR"),
        ("Northgate Owls", "NGO"),
        ("Lakeside Comets", "LSC"),
        ("Desert Vipers", "DSV"),
        ("Iron Bay Miners", "IBM"),
        ("Summit Peaks", "SMP"),
        ("Coastal Tides", "CTD"),
        ("Prairie Wolves", "PRW"),
        ("Metro Sparks", "MSP"),
        ("Granite Bears", "GRB"),
        ("River Kings", "RVK"),
        ("Capital Foxes", "CPF"),
        ("Bayou Gators", "BYG"),
        ("Pine Ridge Elks", "PRE"),
        ("Sunset Surfers", "SSF"),
    ];
    const VENUES: [&str; 8] = [
        "Harbor Arena",
        "Rivet Dome",
        "Owl Fieldhouse",
        "Comet Center",
        "Viper Pit",
        "Miners Hall",
        "Summit Garden",
        "Tide Pavilion",
    ];
    let team = |k: usize| {
        let (name, abbr) = TEAMS[k % TEAMS.len()];
        Node::Obj(vec![
            ("team_id", Node::Fixed(100 + k as i64)),
            ("name", text(name)),
            ("abbr", text(abbr)),
            ("score", int(60, 139)),
            ("timeouts", int(0, 7)),
            ("fouls", int(0, 6)),
            (
                "stats",
                Node::Obj(vec![
                    ("fg_pct", dec(350, 600, 1)),
                    ("three_pct", dec(200, 500, 1)),
                    ("ft_pct", dec(600, 950, 1)),
                    ("rebounds", int(20, 60)),
                    ("assists", int(10, 35)),
                    ("turnovers", int(3, 20)),
                ]),
            ),
        ])
    };
    let base = publisher as usize * 7;
    let game = |g: usize| {
        Node::Obj(vec![
            ("game_id", Node::Fixed(40_000 + (base + g) as i64)),
            ("status", text("in_progress")),
            ("venue", text(VENUES[(base + g) % VENUES.len()])),
            ("period", int(1, 4)),
            ("clock", Node::Num(Num::Clock)),
            ("home", team(2 * (base + g))),
            ("away", team(2 * (base + g) + 1)),
            ("last_play", Node::Num(Num::Pick(0))),
        ])
    };
    const PLAYERS: [&str; 12] = [
        "A. Okafor",
        "B. Lindqvist",
        "C. Moreau",
        "D. Haddad",
        "E. Tanaka",
        "F. Silva",
        "G. Novak",
        "H. Mensah",
        "I. Romero",
        "J. Kowalski",
        "K. Adeyemi",
        "L. Fischer",
    ];
    let leader = |k: usize| {
        Node::Obj(vec![
            ("player", text(PLAYERS[(base + k) % PLAYERS.len()])),
            ("team", text(TEAMS[(2 * base + k) % TEAMS.len()].1)),
            ("pts", int(0, 45)),
            ("reb", int(0, 20)),
            ("ast", int(0, 15)),
        ])
    };
    let mut f = vec![
        ("id", Node::Stamp),
        ("league", text("PBL")),
        ("season", text("2026-27")),
        ("updated", Node::Num(Num::TimeMs)),
        ("games", Node::Arr((0..games).map(game).collect())),
    ];
    if leaders > 0 {
        f.push(("leaders", Node::Arr((0..leaders).map(leader).collect())));
    }
    f
}

/// What [`Num::Pick`] list 0 (a scoreboard's last play) chooses from.
pub(super) const PLAYS: [&str; 8] = [
    "three pointer",
    "layup",
    "free throw made",
    "defensive rebound",
    "turnover",
    "timeout",
    "personal foul",
    "dunk",
];

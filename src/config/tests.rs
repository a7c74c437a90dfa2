//! The tests of loading and validating settings: defaults, file, environment,
//! and the errors that name the key.

use super::*;
use std::io::Write;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut f = tempfile(toml);
    f.flush().unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_from(Some(&f.path), None, env)
}

struct TempFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}
impl Write for TempFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
fn tempfile(content: &str) -> TempFile {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("fanout-config-{}-{n}.toml", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(content.as_bytes()).unwrap();
    TempFile { path, file }
}

#[test]
fn the_embedded_defaults_are_valid() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.queue.policy, Policy::DropOldest);
    assert_eq!(c.server.ping_interval, Duration::from_secs(20));
}

#[test]
fn file_then_env_override_the_defaults() {
    let c = load(
        "[queue]\npolicy = \"conflate\"\n[server]\nlisten = \"127.0.0.1:9000\"\n",
        &[
            ("FANOUT__SERVER__LISTEN", "127.0.0.1:9001"),
            ("FANOUT__QUEUE__MAX_MESSAGES", "7"),
        ],
    )
    .unwrap();
    assert_eq!(c.queue.policy, Policy::Conflate);
    assert_eq!(c.server.listen, "127.0.0.1:9001");
    assert_eq!(c.queue.max_messages, 7);
}

#[test]
fn the_readme_compression_example_loads_and_a_rule_turns_it_off() {
    let c = load(
        "[compression]\nenabled = true\nmin_bytes = 256\nlevel = 3\n\n\
         [[topics]]\npattern = \"images.>\"\ncompression = false\n",
        &[("FANOUT__COMPRESSION__LEVEL", "6")],
    )
    .unwrap();
    let topic = |t: &str| c.topic_settings(&TopicName::parse(t).unwrap()).deflate;
    assert_eq!(topic("images.cam1"), None);
    assert_eq!(
        topic("scores.live"),
        Some(Deflate {
            level: 6,
            min_bytes: 256
        })
    );
    assert_eq!(topic("$sys.stats").map(|d| d.level), Some(6));
    let e = load("[compression]\nlevel = 0\n", &[]).unwrap_err().to_string();
    assert!(e.contains("compression.level") && e.contains("1 (fastest) to 9"), "{e}");
    let e = load("[compression]\nwindow = 10\n", &[]).unwrap_err().to_string();
    assert!(e.contains("window"), "{e}");
    let off = load("", &[("FANOUT__COMPRESSION__ENABLED", "false")]).unwrap();
    assert_eq!(off.topic_settings(&TopicName::parse("a").unwrap()).deflate, None);
}

#[test]
fn unknown_keys_are_named() {
    let e = load("[server]\nlisten_on = \"x\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("listen_on"), "{e}");
    let e = load("[nope]\na = 1\n", &[]).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn bad_values_name_the_key_and_the_allowed_values() {
    let e = load("[queue]\npolicy = \"drop_all\"\n", &[]).unwrap_err().to_string();
    assert!(
        e.contains("drop_all") && e.contains("drop_oldest") && e.contains("conflate"),
        "{e}"
    );
    let e = load("[server]\nlisten = \"localhost\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("server.listen"), "{e}");
    let e = load("[server]\nidle_timeout = \"soon\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("idle_timeout") && e.contains("soon"), "{e}");
    let e = load("[queue]\nmax_messages = 0\n", &[]).unwrap_err().to_string();
    assert!(e.contains("queue.max_messages"), "{e}");
    let e = load("[queue]\nflush_shards = 100000\n", &[]).unwrap_err().to_string();
    assert!(e.contains("queue.flush_shards") && e.contains("1024"), "{e}");
    let e = load("[[topics]]\npattern = \"a..b\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("topics[0].pattern"), "{e}");
    let e = load("[server]\nidle_timeout = \"5s\"\nping_interval = \"10s\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.idle_timeout"), "{e}");
}

#[test]
fn auth_and_tls_errors_name_the_key() {
    let e = load("[auth]\nmode = \"jwt\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("auth.mode") && e.contains("jwt_secret"), "{e}");
    let e = load("[auth]\nmode = \"oauth\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("oauth") && e.contains("none or jwt"), "{e}");
    let e = load("[auth]\nanonymous_subscribe = [\"a..b\"]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth.anonymous_subscribe[0]"), "{e}");
    let e = load("[tls]\ncert_file = \"/x.pem\"\n", &[]).unwrap_err().to_string();
    assert!(e.contains("tls.key_file"), "{e}");
    let e = load("[cluster]\nnats_url = \"nats://x:4222\"\nstream = \"a.b\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.stream"), "{e}");
    let e = load("[cluster]\nnats_url = \"http://x:y:z\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.nats_url"), "{e}");
    let c = load(
        "",
        &[(
            "FANOUT__CLUSTER__NATS_URL",
            "nats://127.0.0.1:4222, nats://127.0.0.2:4222",
        )],
    )
    .unwrap();
    assert_eq!(c.cluster.urls().len(), 2);
    assert!(c.cluster.enabled() && c.cluster.subject_prefix == "fanout");
    let e = load("[server]\nallowed_origins = [\"https://a.com/\"]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.allowed_origins[0]"), "{e}");
    let c = load("[auth]\nmode = \"jwt\"\n", &[("FANOUT__AUTH__JWT_SECRET", "s")]).unwrap();
    assert_eq!(c.auth.mode, AuthMode::Jwt);
}

#[test]
fn the_root_topic_is_a_topic_name_or_empty_from_the_file_or_the_environment() {
    assert_eq!(Config::default().server.root_topic, "root");
    let c = load("[server]\nroot_topic = \"chat.lobby\"\n", &[]).unwrap();
    assert_eq!(c.server.root_topic, "chat.lobby");
    for (value, expected) in [("news.live", "news.live"), ("", ""), ("42", "42")] {
        let c = load("", &[("FANOUT__SERVER__ROOT_TOPIC", value)]).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(c.server.root_topic, expected, "from {value:?}");
    }
    for bad in ["a..b", "quotes.*", "quotes.>", "has space"] {
        let e = load(&format!("[server]\nroot_topic = \"{bad}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.root_topic") && e.contains(bad), "{bad}: {e}");
        let e = load("", &[("FANOUT__SERVER__ROOT_TOPIC", bad)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.root_topic"), "{bad} from the environment: {e}");
    }
}

#[test]
fn the_first_matching_rule_decides_a_topics_settings() {
    let c = load(
        "[[topics]]\npattern = \"quotes.>\"\nhistory_size = 0\nlast_value = true\npolicy = \"conflate\"\n\
         [[topics]]\npattern = \">\"\nhistory_size = 5\n",
        &[],
    )
    .unwrap();
    let q = c.topic_settings(&TopicName::parse("quotes.X.Y").unwrap());
    assert_eq!((q.history_size, q.last_value, q.policy), (0, true, Policy::Conflate));
    let o = c.topic_settings(&TopicName::parse("other").unwrap());
    assert_eq!((o.history_size, o.last_value, o.policy), (5, false, Policy::DropOldest));
}

#[test]
fn the_effective_config_prints_and_parses_back() {
    let c = Config::default();
    let printed = c.to_toml();
    let back: Config = toml::from_str(&printed).unwrap();
    assert_eq!(back, c);
}

#[test]
fn lists_from_the_environment_are_comma_separated_and_trimmed() {
    let c = load(
        "",
        &[
            ("FANOUT__AUTH__PUBLISH_KEYS", "k1,k2"),
            ("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "public.>, news.*"),
            (
                "FANOUT__SERVER__ALLOWED_ORIGINS",
                " https://a.example.com ,https://*.example.org ",
            ),
        ],
    )
    .unwrap();
    assert_eq!(c.auth.publish_keys, ["k1", "k2"]);
    assert_eq!(c.auth.anonymous_subscribe, ["public.>", "news.*"]);
    assert_eq!(
        c.server.allowed_origins,
        ["https://a.example.com", "https://*.example.org"]
    );
}

#[test]
fn an_empty_list_from_the_environment_replaces_the_files_list() {
    let file = "[server]\nallowed_origins = [\"https://x.example.com\", \"https://y.example.com\"]\n\
                [auth]\npublish_keys = [\"f1\", \"f2\", \"f3\"]\n";
    let c = load(
        file,
        &[
            ("FANOUT__SERVER__ALLOWED_ORIGINS", ""),
            ("FANOUT__AUTH__PUBLISH_KEYS", " , ,"),
        ],
    )
    .unwrap();
    assert!(c.server.allowed_origins.is_empty(), "{:?}", c.server.allowed_origins);
    assert!(c.auth.publish_keys.is_empty(), "{:?}", c.auth.publish_keys);
    // A shorter list replaces the file's whole list, not just its first items.
    let c = load(file, &[("FANOUT__AUTH__PUBLISH_KEYS", "e1,,e2,")]).unwrap();
    assert_eq!(c.auth.publish_keys, ["e1", "e2"]);
}

#[test]
fn one_item_is_a_list_even_when_it_looks_like_a_number() {
    for (value, item) in [
        ("k1", "k1"),
        (" 12345 ", "12345"),
        ("true", "true"),
        ("1.5", "1.5"),
        ("nan", "nan"),
    ] {
        let c = load("", &[("FANOUT__AUTH__PUBLISH_KEYS", value)]).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(c.auth.publish_keys, [item], "from {value:?}");
    }
}

#[test]
fn commas_in_string_keys_are_left_alone() {
    let c = load(
        "",
        &[
            (
                "FANOUT__CLUSTER__NATS_URL",
                "nats://127.0.0.1:4222,nats://127.0.0.2:4222",
            ),
            ("FANOUT__AUTH__JWT_SECRET", "a,b"),
        ],
    )
    .unwrap();
    assert_eq!(c.cluster.nats_url, "nats://127.0.0.1:4222,nats://127.0.0.2:4222");
    assert_eq!(c.auth.jwt_secret, "a,b");
}

#[test]
fn a_bad_item_from_the_environment_names_the_key_and_its_index() {
    let e = load("", &[("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "ok.*, a..b")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth.anonymous_subscribe[1]"), "{e}");
    let e = load("", &[("FANOUT__SERVER__ALLOWED_ORIGINS", "https://a.example.com/")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.allowed_origins[0]"), "{e}");
}

#[test]
fn every_list_key_takes_a_comma_separated_value() {
    // Items plain enough that every list key's validation takes them.
    for key in env::list_keys().unwrap() {
        let var = format!("FANOUT__{}", key.to_uppercase().replace('.', "__"));
        let c = load("", &[(var.as_str(), "x1, x2")]).unwrap_or_else(|e| panic!("{var}: {e}"));
        let mut value = serde_json::to_value(&c).unwrap();
        for part in key.split('.') {
            value = value[part].take();
        }
        assert_eq!(value, serde_json::json!(["x1", "x2"]), "{var}");
    }
}

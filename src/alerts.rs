//! Alerts: the rules and their state live in the core
//! ([`papertrader_core::alerts`]); this module adds where each alert goes
//! besides the `alerts` topic: the generic webhook (`alerts.webhook_url`, the
//! alert's JSON) and chat services in their own message formats
//! (`[alerts.telegram]`, `[alerts.slack]`, `[alerts.discord]`), which can take
//! every fill too. Each destination has its own queue and task, so a slow or
//! failing one delays no other, and posts in order with the same retries.

use std::time::Duration;

use serde_json::{json, Value};

pub use papertrader_core::alerts::*;
use papertrader_core::config::{AlertsConfig, Problem};
pub use papertrader_core::domain::AlertMsg;

/// What a destination is sent: an alert, or a fill as published (the JSON of
/// the `fills` topic).
#[derive(Debug, Clone)]
pub enum Notice {
    Alert(AlertMsg),
    Fill(Value),
}

impl Notice {
    /// The alert's or the fill's id, for logs.
    pub fn id(&self) -> String {
        match self {
            Notice::Alert(a) => a.alert_id.clone(),
            Notice::Fill(f) => plain(&f["fill_id"]),
        }
    }
}

/// A JSON value as a trader reads it: strings without quotes, null as "".
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A notice in four parts, before any markup: the headline (`Alert: RULE`,
/// `Fill: STRATEGY`), what and where (kind and subject; side, quantity,
/// symbol and price), the message, and the event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub head: String,
    pub meta: String,
    pub body: String,
    pub time: String,
}

impl Card {
    pub fn of(n: &Notice) -> Card {
        match n {
            Notice::Alert(a) => Card {
                head: format!("Alert: {}", a.rule),
                meta: format!("{} · {}", a.kind, a.subject),
                body: a.message.clone(),
                time: format!("event time {}", papertrader_core::wire::format_ts(a.ts)),
            },
            Notice::Fill(f) => {
                let fee = plain(&f["fee"]);
                let liquidity = plain(&f["liquidity"]);
                Card {
                    head: format!("Fill: {}", plain(&f["strategy"])),
                    meta: format!(
                        "{} {} {} @ {}",
                        plain(&f["side"]).to_uppercase(),
                        plain(&f["qty"]),
                        plain(&f["symbol"]),
                        plain(&f["price"])
                    ),
                    body: if liquidity.is_empty() {
                        format!("fee {fee}")
                    } else {
                        format!("fee {fee} · {liquidity}")
                    },
                    time: format!("event time {}", plain(&f["ts"])),
                }
            }
        }
    }
}

/// Telegram's HTML parse mode: `&`, `<` and `>` become entities, the only
/// characters it requires escaped outside tags
/// (<https://core.telegram.org/bots/api#html-style>).
pub fn escape_telegram_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack's control characters `&`, `<` and `>` as the HTML entities Slack
/// asks for (<https://api.slack.com/reference/surfaces/formatting#escaping>):
/// a `<!channel>` or `<http://...|link>` in a message stays text.
pub fn escape_slack(s: &str) -> String {
    escape_telegram_html(s)
}

/// Discord's markdown: a backslash before each character that could start
/// formatting (emphasis, code, spoilers, quotes, headings, masked links,
/// mentions), so the text shows as written
/// (<https://support.discord.com/hc/en-us/articles/210298617>).
pub fn escape_discord(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '[' | ']' | '@'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Telegram's limit on a message's text (<https://core.telegram.org/bots/api#sendmessage>).
pub const TELEGRAM_MAX_CHARS: usize = 4096;
/// Discord's limit on `content` (<https://discord.com/developers/docs/resources/webhook#execute-webhook>).
pub const DISCORD_MAX_CHARS: usize = 2000;
/// Slack advises keeping `text` to a few thousand characters
/// (<https://api.slack.com/methods/chat.postMessage#truncating>).
pub const SLACK_MAX_CHARS: usize = 4000;

/// `render(card)` within `max` characters: the longest start of the message
/// part that fits is kept (ending in "…"), cut before the markup is applied,
/// so no escape is split.
fn fit(card: &Card, max: usize, render: impl Fn(&Card) -> String) -> String {
    let full = render(card);
    if full.chars().count() <= max {
        return full;
    }
    let body: Vec<char> = card.body.chars().collect();
    let with = |keep: usize| {
        let mut c = card.clone();
        c.body = body[..keep].iter().collect();
        c.body.push('…');
        render(&c)
    };
    // The longest kept prefix whose rendering fits (binary search: the
    // rendering grows with the prefix).
    let (mut lo, mut hi) = (0, body.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if with(mid).chars().count() <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    with(lo)
}

/// A notice as Telegram HTML: the headline bold, the time italic.
pub fn telegram_text(n: &Notice) -> String {
    fit(&Card::of(n), TELEGRAM_MAX_CHARS, |c| {
        let e = escape_telegram_html;
        format!(
            "<b>{}</b>\n{}\n{}\n<i>{}</i>",
            e(&c.head),
            e(&c.meta),
            e(&c.body),
            e(&c.time)
        )
    })
}

/// A notice as Slack mrkdwn: the headline bold, the time italic.
pub fn slack_text(n: &Notice) -> String {
    fit(&Card::of(n), SLACK_MAX_CHARS, |c| {
        let e = escape_slack;
        format!(
            "*{}*\n{}\n{}\n_{}_",
            e(&c.head),
            e(&c.meta),
            e(&c.body),
            e(&c.time)
        )
    })
}

/// A notice as Discord markdown: the headline bold, the time italic.
pub fn discord_content(n: &Notice) -> String {
    fit(&Card::of(n), DISCORD_MAX_CHARS, |c| {
        let e = escape_discord;
        format!(
            "**{}**\n{}\n{}\n*{}*",
            e(&c.head),
            e(&c.meta),
            e(&c.body),
            e(&c.time)
        )
    })
}

/// One destination of notices.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// `alerts.webhook_url`: each alert's JSON as on the `alerts` topic; no fills.
    Webhook(String),
    /// A bot's `sendMessage` to one chat.
    Telegram {
        api_url: String,
        token: String,
        chat_id: String,
    },
    /// A Slack incoming webhook.
    Slack(String),
    /// A Discord webhook.
    Discord(String),
}

impl Sink {
    /// The destination's name in logs (never its URL, which holds a secret).
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Webhook(_) => "webhook",
            Sink::Telegram { .. } => "telegram",
            Sink::Slack(_) => "slack",
            Sink::Discord(_) => "discord",
        }
    }

    /// Where the POST goes.
    pub fn url(&self) -> String {
        match self {
            Sink::Webhook(u) | Sink::Slack(u) | Sink::Discord(u) => u.clone(),
            Sink::Telegram { api_url, token, .. } => {
                format!("{}/bot{token}/sendMessage", api_url.trim_end_matches('/'))
            }
        }
    }

    /// The JSON body for `n`, in the destination's format; `None` for a fill
    /// to the generic webhook, which carries alerts only.
    pub fn payload(&self, n: &Notice) -> Option<Value> {
        Some(match self {
            Sink::Webhook(_) => match n {
                Notice::Alert(a) => serde_json::to_value(a).expect("alerts serialize"),
                Notice::Fill(_) => return None,
            },
            // https://core.telegram.org/bots/api#sendmessage: chat_id is an
            // Integer or a String (@channelusername).
            Sink::Telegram { chat_id, .. } => json!({
                "chat_id": chat_id.parse::<i64>().map_or_else(|_| json!(chat_id), |id| json!(id)),
                "text": telegram_text(n),
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true},
            }),
            // https://api.slack.com/messaging/webhooks: a JSON body with `text`.
            Sink::Slack(_) => json!({ "text": slack_text(n) }),
            // https://discord.com/developers/docs/resources/webhook#execute-webhook:
            // `content` up to 2000 characters; no mention in it pings anyone.
            Sink::Discord(_) => json!({
                "content": discord_content(n),
                "allowed_mentions": {"parse": []},
            }),
        })
    }
}

/// The destinations `cfg` configures, each with whether it takes fills.
///
/// # Errors
/// A problem with a chat section (the loader's `check` reports it first).
pub fn sinks(cfg: &AlertsConfig) -> Result<Vec<(Sink, bool)>, Problem> {
    let mut out = Vec::new();
    let url = cfg.webhook_url.trim();
    if !url.is_empty() {
        out.push((Sink::Webhook(url.to_string()), false));
    }
    if let Some((token, chat_id)) = cfg.telegram.resolve()? {
        let api_url = cfg.telegram.api_url.trim().to_string();
        let sink = Sink::Telegram {
            api_url,
            token,
            chat_id,
        };
        out.push((sink, cfg.telegram.fills));
    }
    if let Some(url) = cfg.slack.resolve("alerts.slack")? {
        out.push((Sink::Slack(url), cfg.slack.fills));
    }
    if let Some(url) = cfg.discord.resolve("alerts.discord")? {
        out.push((Sink::Discord(url), cfg.discord.fills));
    }
    Ok(out)
}

/// How often a POST is tried: `attempts` in all, waiting `backoff` before the
/// first retry and twice as long before each next one.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

/// The longest wait a 429 answer is obeyed for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait a 429 answer asks for: Discord's JSON `retry_after` (seconds,
/// fractional: <https://discord.com/developers/docs/topics/rate-limits>),
/// Telegram's `parameters.retry_after`
/// (<https://core.telegram.org/bots/api#responseparameters>), or the
/// `Retry-After` header (seconds; Slack's).
pub fn retry_after(header: Option<&str>, body: &str) -> Option<Duration> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let secs = v["retry_after"]
        .as_f64()
        .or_else(|| v["parameters"]["retry_after"].as_f64())
        .or_else(|| header.and_then(|h| h.trim().parse::<f64>().ok()))?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
}

/// POST `body` as JSON to `url` with `retry`. A 2xx answer succeeds; anything
/// else (refused connection, 5xx, 4xx) is retried, after the wait a 429
/// answer names when it names one. `sink` and `id` are for the logs, which
/// never show the URL (a chat service's URL holds its secret).
///
/// # Errors
/// The last failure, once every attempt failed.
pub async fn post_json(
    client: &reqwest::Client,
    sink: &str,
    url: &str,
    body: &Value,
    id: &str,
    retry: Retry,
) -> Result<(), String> {
    let mut wait = retry.backoff;
    let mut last = String::new();
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        let mut pause = wait;
        match client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status();
                let header = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string);
                let text = r.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    if let Some(d) = retry_after(header.as_deref(), &text) {
                        pause = d;
                    }
                }
                let text: String = text.chars().take(200).collect();
                last = format!("HTTP {status}: {}", text.trim());
            }
            Err(e) => last = e.without_url().to_string(),
        }
        tracing::warn!(sink, attempt, error = %last, id, "notification failed");
        if attempt < attempts {
            tokio::time::sleep(pause).await;
            if pause == wait {
                wait *= 2;
            }
        }
    }
    Err(last)
}

/// POST `alert` as JSON to `url`, up to `attempts` times, waiting `backoff`
/// before the first retry and twice as long before each next one. A 2xx answer
/// succeeds; anything else (refused connection, 5xx, 4xx) is retried.
///
/// # Errors
/// The last failure, once every attempt failed.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    alert: &AlertMsg,
    attempts: u32,
    backoff: Duration,
) -> Result<(), String> {
    let body = serde_json::to_value(alert).expect("alerts serialize");
    let retry = Retry { attempts, backoff };
    post_json(client, "webhook", url, &body, &alert.alert_id, retry).await
}

/// The queues to the destinations' tasks. Cloning shares the queues.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Vec<(tokio::sync::mpsc::UnboundedSender<Notice>, bool)>,
}

impl Notifier {
    /// One task per destination in `sinks` (with whether it takes fills),
    /// posting its notices in order with `retry`; `None` without destinations.
    /// Call inside a tokio runtime.
    pub fn start(sinks: Vec<(Sink, bool)>, retry: Retry) -> Option<Notifier> {
        if sinks.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let queues = sinks
            .into_iter()
            .map(|(sink, fills)| {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Notice>();
                let client = client.clone();
                tokio::spawn(async move {
                    let url = sink.url();
                    while let Some(n) = rx.recv().await {
                        let Some(body) = sink.payload(&n) else {
                            continue;
                        };
                        let id = n.id();
                        if let Err(e) = post_json(&client, sink.name(), &url, &body, &id, retry).await
                        {
                            tracing::error!(sink = sink.name(), id, error = %e, "notification gave up");
                        }
                    }
                });
                (tx, fills)
            })
            .collect();
        Some(Notifier { queues })
    }

    /// [`Notifier::start`] with the destinations and retries of `cfg`.
    ///
    /// # Errors
    /// A problem with a chat section (the loader's `check` reports it first).
    pub fn from_config(cfg: &AlertsConfig) -> Result<Option<Notifier>, Problem> {
        let retry = Retry {
            attempts: cfg.webhook_attempts,
            backoff: cfg.webhook_backoff.to_std(),
        };
        Ok(Notifier::start(sinks(cfg)?, retry))
    }

    /// Queue `alert` to every destination; `false` once no task takes it.
    pub fn send(&self, alert: AlertMsg) -> bool {
        let mut taken = false;
        for (q, _) in &self.queues {
            taken |= q.send(Notice::Alert(alert.clone())).is_ok();
        }
        taken
    }

    /// Whether a destination takes fills.
    pub fn wants_fills(&self) -> bool {
        self.queues.iter().any(|(_, fills)| *fills)
    }

    /// Queue `fill` (its published JSON) to the destinations that take fills.
    pub fn send_fill(&self, fill: &Value) {
        for (q, fills) in &self.queues {
            if *fills {
                let _ = q.send(Notice::Fill(fill.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(message: &str) -> AlertMsg {
        AlertMsg {
            alert_id: "alert:r:AAA:t-0-1".into(),
            rule: "dd_5<x>".into(),
            kind: "breakout",
            subject: "AAA".into(),
            ts: 1_700_000_003_000_000_000,
            direction: "above",
            value: 5.0,
            threshold: 3.0,
            message: message.into(),
        }
    }

    #[test]
    fn telegram_html_escapes_the_three_entities_only() {
        assert_eq!(
            escape_telegram_html("a < b && c > d *_[x](y)"),
            "a &lt; b &amp;&amp; c &gt; d *_[x](y)"
        );
        let t = telegram_text(&Notice::Alert(alert("AAA at 5 > 3 & rising")));
        assert_eq!(
            t,
            "<b>Alert: dd_5&lt;x&gt;</b>\nbreakout · AAA\nAAA at 5 &gt; 3 &amp; rising\n<i>event time 2023-11-14T22:13:23Z</i>"
        );
    }

    #[test]
    fn slack_escapes_its_control_characters() {
        let t = slack_text(&Notice::Alert(alert("<!channel> & <http://x|y>")));
        assert_eq!(
            t,
            "*Alert: dd_5&lt;x&gt;*\nbreakout · AAA\n&lt;!channel&gt; &amp; &lt;http://x|y&gt;\n_event time 2023-11-14T22:13:23Z_"
        );
    }

    #[test]
    fn discord_escapes_markdown_and_mentions() {
        assert_eq!(
            escape_discord(r"a*b_c~d`e|f>g\h @everyone #1 -x [l](u) <t:1>"),
            r"a\*b\_c\~d\`e\|f\>g\\h \@everyone \#1 -x \[l\](u) \<t:1\>"
        );
        let t = discord_content(&Notice::Alert(alert("rsi(close, 14) > 80")));
        assert_eq!(
            t,
            "**Alert: dd\\_5\\<x\\>**\nbreakout · AAA\nrsi(close, 14) \\> 80\n*event time 2023-11-14T22:13:23Z*"
        );
    }

    #[test]
    fn long_messages_are_cut_to_each_limit_without_splitting_an_escape() {
        let long = "<&>".repeat(3000);
        let n = Notice::Alert(alert(&long));
        let d = discord_content(&n);
        assert!(d.chars().count() <= DISCORD_MAX_CHARS, "{}", d.len());
        // The longest prefix that fits: one more kept character would not.
        assert!(
            d.chars().count() > DISCORD_MAX_CHARS - 3,
            "{}",
            d.chars().count()
        );
        assert!(d.contains("…\n*event time"), "{d}");
        let t = telegram_text(&n);
        assert!(t.chars().count() <= TELEGRAM_MAX_CHARS);
        // The cut falls between whole entities.
        let body = t.split('\n').nth(2).unwrap().trim_end_matches('…');
        let unescaped = body
            .replace("&lt;", "")
            .replace("&gt;", "")
            .replace("&amp;", "");
        assert_eq!(unescaped, "", "{body}");
        let short = slack_text(&Notice::Alert(alert("ok")));
        assert!(!short.contains('…'));
    }

    #[test]
    fn fills_read_as_side_quantity_symbol_price() {
        let f = json!({"fill_id": "f1", "strategy": "cross", "symbol": "AAA",
            "ts": "2023-11-14T22:13:23Z", "side": "buy", "qty": "10", "price": "5",
            "fee": "0.05", "liquidity": "taker"});
        let c = Card::of(&Notice::Fill(f.clone()));
        assert_eq!(
            c,
            Card {
                head: "Fill: cross".into(),
                meta: "BUY 10 AAA @ 5".into(),
                body: "fee 0.05 · taker".into(),
                time: "event time 2023-11-14T22:13:23Z".into(),
            }
        );
        assert_eq!(Sink::Webhook("u".into()).payload(&Notice::Fill(f)), None);
    }

    #[test]
    fn payloads_follow_each_service() {
        let n = Notice::Alert(alert("m"));
        let tg = Sink::Telegram {
            api_url: "http://h/".into(),
            token: "1:A".into(),
            chat_id: "-100".into(),
        };
        assert_eq!(tg.url(), "http://h/bot1:A/sendMessage");
        let p = tg.payload(&n).unwrap();
        assert_eq!(p["chat_id"], json!(-100));
        assert_eq!(p["parse_mode"], "HTML");
        let by_name = Sink::Telegram {
            api_url: "http://h".into(),
            token: "1:A".into(),
            chat_id: "@desk".into(),
        };
        assert_eq!(by_name.payload(&n).unwrap()["chat_id"], json!("@desk"));
        let s = Sink::Slack("u".into()).payload(&n).unwrap();
        assert_eq!(s.as_object().unwrap().len(), 1);
        let d = Sink::Discord("u".into()).payload(&n).unwrap();
        assert_eq!(d["allowed_mentions"], json!({"parse": []}));
    }

    #[test]
    fn retry_after_reads_discord_telegram_and_the_header() {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(
            ms(retry_after(
                None,
                r#"{"retry_after": 0.25, "global": false}"#
            )),
            Some(250)
        );
        assert_eq!(
            ms(retry_after(
                None,
                r#"{"ok":false,"parameters":{"retry_after":2}}"#
            )),
            Some(2000)
        );
        assert_eq!(ms(retry_after(Some("3"), "rate limited")), Some(3000));
        assert_eq!(ms(retry_after(None, "")), None);
        assert_eq!(ms(retry_after(Some("99999"), "")), Some(300_000));
    }
}

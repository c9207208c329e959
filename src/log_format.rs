//! Application log lines in Envoy's formats: the spdlog patterns of
//! `--log-format` and `application_log_config.log_format.text_format`, and
//! `json_format`, a struct whose string values are such patterns.

use crate::http::date::civil_from_days;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's default `--log-format`.
pub const DEFAULT: &str = "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v";

/// One log record, as a pattern sees it.
pub struct Record<'a> {
    /// When it was logged.
    pub time: SystemTime,
    /// Envoy's level name (`info`, `warning` …).
    pub level: &'static str,
    /// The named logger (`main`, `config` …).
    pub logger: &'a str,
    /// The message.
    pub message: &'a str,
    /// Source file and line.
    pub file: &'a str,
    /// Source line.
    pub line: u32,
    /// The module that logged (spdlog's function name).
    pub function: &'a str,
    /// The OS thread id.
    pub thread: u64,
}

/// How a flag's text is padded to a width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
    Center,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Flag {
        flag: char,
        pad: Option<(Align, usize, bool)>,
    },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Part>);

/// spdlog's flags (and Envoy's `%_` and `%j`).
const FLAGS: &str = "vj_tPnlLaAbhBcCYDxmdHIMSefFprRTXzE@sg#!io^$+";

impl Pattern {
    /// Compiles a text pattern. An unknown flag stays as written, as in
    /// spdlog.
    pub fn text(pattern: &str) -> Pattern {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let mut spec = String::from("%");
            let align = match chars.peek() {
                Some('-') => Some(Align::Left),
                Some('=') => Some(Align::Center),
                Some(d) if d.is_ascii_digit() => Some(Align::Right),
                _ => None,
            };
            if matches!(align, Some(Align::Left | Align::Center)) {
                spec.extend(chars.next());
            }
            let mut width = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                width.push(*d);
                chars.next();
            }
            spec.push_str(&width);
            let truncate = !width.is_empty() && chars.next_if_eq(&'!').is_some();
            let Some(flag) = chars.next() else {
                literal.push_str(&spec);
                break;
            };
            if flag == '%' && width.is_empty() {
                literal.push('%');
            } else if FLAGS.contains(flag) {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                let pad = match (align, width.parse::<usize>()) {
                    (Some(a), Ok(w)) => Some((a, w, truncate)),
                    _ => None,
                };
                parts.push(Part::Flag { flag, pad });
            } else {
                literal.push_str(&spec);
                literal.push(flag);
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Pattern(parts)
    }

    /// Compiles a `json_format` struct: its JSON text is the pattern, as
    /// in Envoy, so a flag's text lands inside a JSON string and the
    /// message must be `%j` (JSON-escaped), never `%v` or `%_`.
    pub fn json(format: &serde_json::Value) -> Result<Pattern, String> {
        let pattern = Pattern::text(&format.to_string());
        for forbidden in ['v', '_'] {
            if pattern
                .0
                .iter()
                .any(|p| matches!(p, Part::Flag { flag, .. } if *flag == forbidden))
            {
                return Err(format!(
                    "Usage of %{forbidden} is unavailable for JSON log formats"
                ));
            }
        }
        Ok(pattern)
    }

    /// The line for `record`, without its newline.
    pub fn render(&self, record: &Record) -> String {
        let clock = Clock::new(record.time);
        let mut out = String::with_capacity(128 + record.message.len());
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Flag { flag, pad: None } => flag_text(&mut out, *flag, record, &clock),
                Part::Flag {
                    flag,
                    pad: Some((align, width, truncate)),
                } => {
                    let mut text = String::new();
                    flag_text(&mut text, *flag, record, &clock);
                    pad(&mut out, &text, *align, *width, *truncate);
                }
            }
        }
        out
    }
}

fn pad(out: &mut String, text: &str, align: Align, width: usize, truncate: bool) {
    let len = text.chars().count();
    if len >= width {
        if truncate {
            out.extend(text.chars().take(width));
        } else {
            out.push_str(text);
        }
        return;
    }
    let room = width - len;
    let (before, after) = match align {
        Align::Left => (0, room),
        Align::Right => (room, 0),
        Align::Center => (room / 2, room - room / 2),
    };
    out.extend(std::iter::repeat_n(' ', before));
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', after));
}

/// A record's time, split into civil UTC fields.
struct Clock {
    secs: u64,
    nanos: u32,
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    weekday: usize,
}

impl Clock {
    fn new(time: SystemTime) -> Clock {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = (secs / 86_400) as i64;
        let (year, month, day) = civil_from_days(days);
        let rem = secs % 86_400;
        Clock {
            secs,
            nanos: since.subsec_nanos(),
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4).rem_euclid(7)) as usize,
        }
    }

    fn hour12(&self) -> u64 {
        match self.hour % 12 {
            0 => 12,
            h => h,
        }
    }

    fn am_pm(&self) -> &'static str {
        if self.hour < 12 {
            "AM"
        } else {
            "PM"
        }
    }
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn short_level(level: &str) -> char {
    level.chars().next().map_or('?', |c| c.to_ascii_uppercase())
}

/// Appends `flag`'s text for `r` to `out`.
fn flag_text(out: &mut String, flag: char, r: &Record, c: &Clock) {
    let day_name = DAYS[c.weekday];
    let month_name = MONTHS[(c.month as usize).saturating_sub(1) % 12];
    let _ = match flag {
        'v' => write!(out, "{}", r.message),
        '_' => write!(out, "{}", r.message.escape_default()),
        'j' => {
            let quoted = serde_json::Value::from(r.message).to_string();
            write!(out, "{}", &quoted[1..quoted.len() - 1])
        }
        't' => write!(out, "{}", r.thread),
        'P' => write!(out, "{}", std::process::id()),
        'n' => write!(out, "{}", r.logger),
        'l' => write!(out, "{}", r.level),
        'L' => write!(out, "{}", short_level(r.level)),
        'a' => write!(out, "{}", &day_name[..3]),
        'A' => write!(out, "{day_name}"),
        'b' | 'h' => write!(out, "{}", &month_name[..3]),
        'B' => write!(out, "{month_name}"),
        'c' => write!(
            out,
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            &day_name[..3],
            &month_name[..3],
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.year
        ),
        'C' => write!(out, "{:02}", c.year.rem_euclid(100)),
        'Y' => write!(out, "{}", c.year),
        'D' | 'x' => write!(
            out,
            "{:02}/{:02}/{:02}",
            c.month,
            c.day,
            c.year.rem_euclid(100)
        ),
        'm' => write!(out, "{:02}", c.month),
        'd' => write!(out, "{:02}", c.day),
        'H' => write!(out, "{:02}", c.hour),
        'I' => write!(out, "{:02}", c.hour12()),
        'M' => write!(out, "{:02}", c.minute),
        'S' => write!(out, "{:02}", c.second),
        'e' => write!(out, "{:03}", c.nanos / 1_000_000),
        'f' => write!(out, "{:06}", c.nanos / 1_000),
        'F' => write!(out, "{:09}", c.nanos),
        'p' => write!(out, "{}", c.am_pm()),
        'r' => write!(
            out,
            "{:02}:{:02}:{:02} {}",
            c.hour12(),
            c.minute,
            c.second,
            c.am_pm()
        ),
        'R' => write!(out, "{:02}:{:02}", c.hour, c.minute),
        'T' | 'X' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
        // Lines are written in UTC.
        'z' => write!(out, "+00:00"),
        'E' => write!(out, "{}", c.secs),
        '@' => write!(out, "{}:{}", r.file, r.line),
        's' => write!(out, "{}", r.file.rsplit('/').next().unwrap_or(r.file)),
        'g' => write!(out, "{}", r.file),
        '#' => write!(out, "{}", r.line),
        '!' => write!(out, "{}", r.function),
        // Elapsed time and message counters: spdlog's, 0 here.
        'i' | 'o' => write!(out, "0"),
        '+' => {
            let default = Pattern::text("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
            write!(out, "{}", default.render(r))
        }
        // Colour ranges: nothing without a colour terminal.
        _ => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(message: &str) -> Record<'_> {
        Record {
            // 2026-11-26 17:04:05.123456789 UTC, a Thursday.
            time: UNIX_EPOCH + Duration::new(1_795_712_645, 123_456_789),
            level: "warning",
            logger: "config",
            message,
            file: "src/config/mod.rs",
            line: 42,
            function: "ringway::config",
            thread: 77,
        }
    }

    #[test]
    fn envoys_default_and_istios_patterns() {
        let r = record("loaded");
        assert_eq!(
            Pattern::text(DEFAULT).render(&r),
            "[2026-11-26 17:04:05.123][77][warning][config] [src/config/mod.rs:42] loaded"
        );
        let istio = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t";
        assert_eq!(
            Pattern::text(istio).render(&r),
            "2026-11-26T17:04:05.123456Z\twarning\tenvoy config src/config/mod.rs:42\tloaded\tthread=77"
        );
    }

    #[test]
    fn flags_padding_and_literals() {
        let r = record("a\nb \"q\"");
        let text =
            Pattern::text("%L%m%d %a %b %C %D %I%p %R %E %s %-5n| %5L| %=7l| %3!n %% %q %_ %F");
        assert_eq!(
            text.render(&r),
            "W1126 Thu Nov 26 11/26/26 05PM 17:04 1795712645 mod.rs config|     W| warning| con % %q a\\nb \\\"q\\\" 123456789"
        );
    }

    #[test]
    fn json_formats_escape_the_message() {
        let format =
            serde_json::json!({"msg": "%j", "level": "%l", "n": 5, "nested": {"at": "%s:%#"}});
        let line = Pattern::json(&format)
            .expect("valid")
            .render(&record("say \"hi\"\n"));
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(parsed["msg"], "say \"hi\"\n");
        assert_eq!(parsed["level"], "warning");
        assert_eq!(parsed["n"], 5);
        assert_eq!(parsed["nested"]["at"], "mod.rs:42");
        let err = Pattern::json(&serde_json::json!({"m": "%v"})).expect_err("%v");
        assert_eq!(err, "Usage of %v is unavailable for JSON log formats");
    }
}

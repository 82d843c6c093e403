//! Annotation templates: `{{ $value }}`, `{{ $labels.host }}`, `{{ $rule }}`, `{{ $severity }}`,
//! `{{ $state }}`. Deliberately small: it cannot loop, call or fail at notification time, so
//! what validates when a rule is saved always renders.

use std::collections::BTreeMap;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<'a> {
    Text(&'a str),
    Value,
    Label(&'a str),
    Rule,
    Severity,
    State,
}

/// Splits a template into text and placeholders, or says what is wrong.
pub fn parse(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            format!("`{{{{` at byte {} is never closed with `}}}}`", template.len() - rest.len() + open)
        })?;
        let inner = after[..close].trim();
        parts.push(match inner {
            "$value" => Part::Value,
            "$rule" => Part::Rule,
            "$severity" => Part::Severity,
            "$state" => Part::State,
            other => match other.strip_prefix("$labels.") {
                Some(name) if crate::is_valid_name(name) => Part::Label(name),
                _ => {
                    return Err(format!(
                        "unknown placeholder `{{{{ {other} }}}}`; use $value, $labels.NAME, $rule, $severity or $state"
                    ));
                }
            },
        });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// What placeholders stand for when a notification is written.
pub struct Context<'a> {
    pub value: Option<f64>,
    pub labels: &'a BTreeMap<String, String>,
    pub rule: &'a str,
    pub severity: &'a str,
    pub state: &'a str,
}

/// A value as people read it: integers without decimals, others with at most 4 decimals.
pub fn format_value(value: f64) -> String {
    if value.is_finite() && value == value.trunc() && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else if value.is_finite() {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value}")
    }
}

/// Renders a template; a label the series lacks renders empty, a malformed template as written.
pub fn render(template: &str, ctx: &Context<'_>) -> String {
    let Ok(parts) = parse(template) else { return template.to_string() };
    let mut out = String::with_capacity(template.len() + 16);
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Value => out.push_str(&ctx.value.map(format_value).unwrap_or_else(|| "no data".into())),
            Part::Label(name) => out.push_str(ctx.labels.get(name).map(String::as_str).unwrap_or("")),
            Part::Rule => out.push_str(ctx.rule),
            Part::Severity => out.push_str(ctx.severity),
            Part::State => out.push_str(ctx.state),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_value_and_labels() {
        let labels = BTreeMap::from([("host".to_string(), "web-1".to_string())]);
        let ctx =
            Context { value: Some(93.25), labels: &labels, rule: "high-cpu", severity: "critical", state: "FIRING" };
        assert_eq!(render("CPU {{ $value }}% on {{ $labels.host }}", &ctx), "CPU 93.25% on web-1");
        assert_eq!(render("{{$rule}}/{{ $severity }}/{{ $state }}", &ctx), "high-cpu/critical/FIRING");
        assert_eq!(render("missing: [{{ $labels.zone }}]", &ctx), "missing: []");
        let ctx = Context { value: Some(95.0), ..ctx };
        assert_eq!(render("{{ $value }}", &ctx), "95");
        let ctx = Context { value: None, ..ctx };
        assert_eq!(render("{{ $value }}", &ctx), "no data");
    }

    #[test]
    fn refuses_unknown_or_unclosed_placeholders() {
        assert!(parse("{{ $value").unwrap_err().contains("never closed"));
        assert!(parse("{{ .Value }}").unwrap_err().contains("unknown placeholder"));
        assert!(parse("{{ $labels. }}").is_err());
        assert!(parse("plain text } {").is_ok());
    }

    #[test]
    fn values_read_well() {
        assert_eq!(format_value(1.0 / 3.0), "0.3333");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(1.5), "1.5");
    }
}

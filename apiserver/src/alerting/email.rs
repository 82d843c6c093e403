//! Email delivery over SMTP (lettre): STARTTLS, implicit TLS or plain, with optional auth; a
//! text and an HTML body built from the notification payload.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use microdash_model::{EmailSpec, SmtpTls};

use super::payload::Payload;
use super::send_error::SendError;

const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

pub fn text_body(p: &Payload) -> String {
    let mut out = format!("{}\n\n", p.headline());
    for (key, text) in &p.annotations {
        out.push_str(&format!("{key}: {text}\n"));
    }
    if !p.annotations.is_empty() {
        out.push('\n');
    }
    let value = p.value.map(microdash_model::template::format_value).unwrap_or_else(|| "no data".into());
    out.push_str(&format!("Rule:      {}\n", p.rule));
    out.push_str(&format!(
        "State:     {}{}\n",
        p.state,
        p.previous_state.as_deref().map(|s| format!(" (was {s})")).unwrap_or_default()
    ));
    out.push_str(&format!("Severity:  {}\n", p.severity));
    out.push_str(&format!("Condition: {} {}\n", p.metric, p.condition));
    out.push_str(&format!("Value:     {value}\n"));
    if let Some(starts) = &p.starts_at {
        out.push_str(&format!("Since:     {starts}\n"));
    }
    if let Some(ends) = &p.ends_at {
        out.push_str(&format!("Ended:     {ends}\n"));
    }
    out.push_str(&format!("At:        {}\n", p.at));
    if !p.labels.is_empty() {
        out.push_str("Labels:\n");
        for (k, v) in &p.labels {
            out.push_str(&format!("  {k} = {v}\n"));
        }
    }
    if !p.alerts.is_empty() {
        out.push_str(&format!("Alerts ({}):\n", p.alerts.len()));
        for line in alert_lines(p) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!("\nTenant {} · channel {} · key {}\n", p.tenant, p.channel, p.idempotency_key));
    out
}

/// One line per alert of a grouped notification: `[FIRING] high-cpu host=web-1 = 93.5`.
fn alert_lines(p: &Payload) -> Vec<String> {
    p.alerts
        .iter()
        .map(|a| {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let value = a.value.map(microdash_model::template::format_value).unwrap_or_else(|| "no data".into());
            let summary = a.annotations.get("summary").map(|s| format!(" · {s}")).unwrap_or_default();
            format!("[{}] {} {} = {value}{summary}", a.state, a.rule, labels.join(", "))
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn html_body(p: &Payload) -> String {
    let color = match p.state.as_str() {
        "FIRING" => "#dc2626",
        "NODATA" => "#d97706",
        "RESOLVED" => "#16a34a",
        _ => "#2563eb",
    };
    let value = p.value.map(microdash_model::template::format_value).unwrap_or_else(|| "no data".into());
    let mut rows = vec![
        ("Rule", p.rule.clone()),
        ("Severity", p.severity.clone()),
        ("Condition", format!("{} {}", p.metric, p.condition)),
        ("Value", value),
    ];
    if let Some(s) = &p.starts_at {
        rows.push(("Since", s.clone()));
    }
    if let Some(e) = &p.ends_at {
        rows.push(("Ended", e.clone()));
    }
    rows.push(("At", p.at.clone()));
    for (k, v) in &p.labels {
        rows.push(("Label", format!("{k} = {v}")));
    }
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#0f172a\">\
         <p><span style=\"background:{color};color:#fff;padding:2px 8px;border-radius:4px;font-weight:bold\">{}</span> \
         <strong>{}</strong></p>",
        escape(&p.state),
        escape(&p.rule)
    );
    for (key, text) in &p.annotations {
        html.push_str(&format!("<p><em>{}</em>: {}</p>", escape(key), escape(text)));
    }
    html.push_str("<table cellpadding=\"4\" style=\"border-collapse:collapse\">");
    for (k, v) in rows {
        html.push_str(&format!("<tr><td style=\"color:#64748b\">{}</td><td>{}</td></tr>", escape(k), escape(&v)));
    }
    if !p.alerts.is_empty() {
        html.push_str("</table><ul>");
        for line in alert_lines(p) {
            html.push_str(&format!("<li>{}</li>", escape(&line)));
        }
        html.push_str("</ul><table>");
    }
    html.push_str(&format!(
        "</table><p style=\"color:#64748b;font-size:12px\">Tenant {} · channel {} · key {}</p></body></html>",
        escape(&p.tenant),
        escape(&p.channel),
        escape(&p.idempotency_key)
    ));
    html
}

pub fn message(spec: &EmailSpec, p: &Payload) -> Result<Message, SendError> {
    let from: Mailbox = spec.from.parse().map_err(|e| SendError::permanent(format!("email.from: {e}")))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(p.headline())
        .message_id(Some(format!("<{}@microdash>", p.idempotency_key)))
        .header(header::UserAgent::from(concat!("microdash/", env!("CARGO_PKG_VERSION")).to_string()));
    for to in &spec.to {
        let mailbox: Mailbox = to.parse().map_err(|e| SendError::permanent(format!("email.to {to:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(text_body(p), html_body(p)))
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))
}

/// The PEM certificates of a bundle, one block each.
fn pem_blocks(pem: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.windows(BEGIN.len()).position(|w| w == BEGIN) {
        let after = &rest[start..];
        let Some(end) = after.windows(END.len()).position(|w| w == END) else { break };
        out.push(&after[..end + END.len()]);
        rest = &after[end + END.len()..];
    }
    out
}

/// `ca_pem`: certificates trusted besides the system's (`notify_ca_file`).
pub async fn send(spec: &EmailSpec, p: &Payload, ca_pem: Option<&[u8]>) -> Result<(), SendError> {
    let message = message(spec, p)?;
    let smtp = &spec.smtp;
    let host = smtp.host.trim();
    let tls = |host: &str| {
        let mut params = TlsParameters::builder(host.to_string());
        for block in ca_pem.map(pem_blocks).unwrap_or_default() {
            let cert = lettre::transport::smtp::client::Certificate::from_pem(block)
                .map_err(|e| SendError::permanent(format!("notify_ca_file: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        params.build().map_err(|e| SendError::permanent(format!("TLS setup for {host}: {e}")))
    };
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(smtp.port()).timeout(Some(SMTP_TIMEOUT));
    builder = match smtp.tls() {
        SmtpTls::Starttls => builder.tls(Tls::Required(tls(host)?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
        SmtpTls::None => builder.tls(Tls::None),
    };
    if let Some(user) = &smtp.username {
        builder = builder.credentials(Credentials::new(user.clone(), smtp.password.clone().unwrap_or_default()));
    }
    let transport = builder.build();
    match tokio::time::timeout(SMTP_TIMEOUT * 2, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let permanent = e.is_permanent();
            let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
            Err(SendError { status_code: code, message: format!("SMTP {}:{}: {e}", host, smtp.port()), permanent })
        }
        Err(_) => Err(SendError::temporary(None, format!("SMTP {}:{} timed out", host, smtp.port()))),
    }
}

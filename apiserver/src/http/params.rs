//! Query-string parameters, parsed by hand so every mistake names its parameter.

use crate::domain::Labels;
use crate::http::error::{AppError, AppResult};

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> AppResult<Self> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
            .map_err(|e| AppError::bad_request(format!("the query string is not valid: {e}")))?;
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn required(&self, name: &str) -> AppResult<&str> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(AppError::bad_request(format!("the `{name}` parameter is required")).field(name)),
        }
    }

    /// `match=k=v,k2=v2` (repeatable) into label matchers.
    pub fn matchers(&self) -> AppResult<Labels> {
        let mut labels = Labels::new();
        for text in self.all("match") {
            for pair in text.split(',').filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(
                        AppError::bad_request(format!("match {pair:?} must look like key=value")).field("match")
                    );
                };
                labels.insert(k.trim().to_string(), v.to_string());
            }
        }
        Ok(labels)
    }

    /// A time: Unix ms, RFC 3339, `now`, or `now-15m`.
    pub fn time(&self, name: &str, now: i64) -> AppResult<Option<i64>> {
        let Some(text) = self.get(name) else { return Ok(None) };
        parse_time(text, now).map(Some).ok_or_else(|| {
            AppError::bad_request(format!(
                "`{name}` {text:?} must be Unix milliseconds, an RFC 3339 time, `now` or `now-15m`"
            ))
            .field(name)
        })
    }

    /// A duration like `60s` or plain milliseconds, at most `MAX_TIME_MS`.
    pub fn duration_ms(&self, name: &str) -> AppResult<Option<i64>> {
        let Some(text) = self.get(name) else { return Ok(None) };
        let ms = text
            .parse::<i64>()
            .ok()
            .or_else(|| humantime::parse_duration(text).ok().map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            .filter(|ms| (1..=MAX_TIME_MS).contains(ms));
        ms.map(Some).ok_or_else(|| {
            AppError::bad_request(format!(
                "`{name}` {text:?} must be a positive duration like 60s or 5m, at most 10000 years"
            ))
            .field(name)
        })
    }
}

/// Times are read as the model reads them (queries, silences, the MCP tools alike).
pub use microdash_model::time::{MAX_TIME_MS, parse_time};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_positive_and_bounded() {
        // Times themselves are tested where they are parsed (`microdash_model::time`).
        let p = Params::parse(Some("a=1&b=100000000000y&c=0&d=9223372036854775807")).unwrap();
        assert_eq!(p.duration_ms("a").unwrap(), Some(1));
        assert!(p.duration_ms("b").is_err());
        assert!(p.duration_ms("c").is_err());
        assert!(p.duration_ms("d").is_err());
    }

    #[test]
    fn matchers_split_pairs() {
        let p = Params::parse(Some("match=host%3Da,dc%3Deu&match=x%3D1")).unwrap();
        let m = p.matchers().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["dc"], "eu");
        assert!(Params::parse(Some("match=nope")).unwrap().matchers().is_err());
    }
}

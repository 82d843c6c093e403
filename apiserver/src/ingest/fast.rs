//! The bulk body's fast path: a scanner for the JSON that clients actually send.
//!
//! `{"samples":[…]}` or a bare array of flat objects with `metric`, `value`, `ts` (integer
//! milliseconds, an RFC 3339 string or null), `labels` (an object of strings) and `dedupe_id`,
//! strings without escapes. Each sample goes to the request's `Interner` as it is read: no
//! intermediate vector, no serde visitor per field. Anything else (an escape, an unknown or
//! repeated field, a number out of range, a sample the limits refuse) makes it give up, and
//! the serde path parses the body again and names the problem: the answer is the serde path's
//! in every case, which the differential test in `ingest::tests` holds it to.
//!
//! Measured on the bench's body (5000 samples of 110 bytes, one core): serde_json with
//! borrowed fields 196 ns a sample, sonic-rs through serde 227, simd-json through serde 400,
//! this scanner (with the interning both include) in `docs/benchmarks.md`.

use std::borrow::Cow;

use super::{Fields, Interner};
use crate::domain::sample::parse_rfc3339_ms;
use crate::domain::{Limits, Sample};

/// The samples of `body`, or `None` when the serde path must decide.
pub(super) fn parse_bulk(body: &[u8], limits: &Limits, now_ms: i64) -> Option<Vec<Sample>> {
    // Checked once for the whole body; strings are then cut at ASCII quotes.
    let text = std::str::from_utf8(body).ok()?;
    let mut at = Cursor { text, bytes: body, at: 0 };
    at.ws();
    let wrapped = at.peek()? == b'{';
    if wrapped {
        at.eat(b'{')?;
        if at.string()? != "samples" {
            return None;
        }
        at.eat(b':')?;
    }
    at.eat(b'[')?;
    let mut interner = Interner::new(limits);
    // The bench's samples take ~110 bytes, the smallest useful one ~25.
    let mut samples = Vec::with_capacity((body.len() / 64).min(limits.max_batch_samples));
    at.ws();
    if at.peek()? == b']' {
        at.at += 1;
    } else {
        loop {
            if samples.len() == limits.max_batch_samples {
                return None;
            }
            let fields = at.sample()?;
            samples.push(interner.sample(fields, now_ms).ok()?);
            if !at.more(b']')? {
                break;
            }
        }
    }
    if wrapped {
        at.eat(b'}')?;
    }
    at.ws();
    (at.at == body.len()).then_some(samples)
}

/// One line of VictoriaMetrics' import format (`vm_import`) without serde: the `metric`
/// object's text (an object of strings), its values and timestamps into `values` and
/// `timestamps` (cleared first). `None` when the serde path must decide: an escape, a repeated
/// or unknown key, a missing array, a timestamp with a sign or past 18 digits, a value out of
/// range.
pub(super) fn import_line<'a>(text: &'a str, values: &mut Vec<f64>, timestamps: &mut Vec<i64>) -> Option<&'a str> {
    values.clear();
    timestamps.clear();
    let mut at = Cursor { text, bytes: text.as_bytes(), at: 0 };
    at.eat(b'{')?;
    let (mut metric, mut have_values, mut have_timestamps) = (None, false, false);
    loop {
        let key = at.string()?;
        at.eat(b':')?;
        match key {
            "metric" if metric.is_none() => metric = Some(at.labels()?),
            "values" if !have_values => {
                have_values = true;
                at.list(|at| {
                    values.push(at.value()?);
                    Some(())
                })?;
            }
            "timestamps" if !have_timestamps => {
                have_timestamps = true;
                at.list(|at| {
                    let (negative, ts) = at.integer(18)?;
                    // A sign (even `-0`) is for serde to read.
                    (!negative).then(|| timestamps.push(ts))
                })?;
            }
            _ => return None,
        }
        if !at.more(b'}')? {
            break;
        }
    }
    at.ws();
    (at.at == text.len() && have_values && have_timestamps).then_some(metric?)
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of every byte of `x` equal to `byte`, exactly (no borrow crosses bytes).
#[inline]
fn bytes_equal(x: u64, byte: u8) -> u64 {
    let t = x ^ (ONES * u64::from(byte));
    !(((t & LOW7) + LOW7) | t) & HIGH
}

/// The first byte at or after `from` that ends a string without escapes: a quote, a backslash
/// or a control character. Eight bytes at a time (SWAR), then one at a time for the last few.
/// Strings here are short (a metric, a label), so the point is fewer branches per byte.
#[inline]
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().ok()?);
        // Bytes below 0x20: the borrow of the subtraction can only mark bytes above a true
        // match, so the lowest mark is exact.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let hits = bytes_equal(x, b'"') | bytes_equal(x, b'\\') | control;
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    Some(i + bytes[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?)
}

/// The fields of a bulk sample.
#[derive(Clone, Copy)]
enum Key {
    Metric,
    Value,
    Ts,
    Labels,
    DedupeId,
}

/// The `}` that closes an object whose first member starts at `from`: the first `}` outside a
/// string, strings told by counting quotes eight bytes at a time (a prefix XOR of the quotes'
/// bits). `None` at a backslash before it (an escaped quote would miscount) or at the end.
/// Nothing else is checked: the caller parses the text it gets unless the same text has been
/// parsed before.
#[inline]
fn object_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut inside = 0u64;
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().ok()?);
        let mut open = bytes_equal(x, b'"');
        open ^= open << 8;
        open ^= open << 16;
        open ^= open << 32;
        open ^= inside;
        let closing = bytes_equal(x, b'}') & !open;
        let before = closing.wrapping_sub(1) & !closing;
        if bytes_equal(x, b'\\') & before != 0 {
            return None;
        }
        if closing != 0 {
            return Some(i + closing.trailing_zeros() as usize / 8);
        }
        inside = if open >> 63 == 1 { HIGH } else { 0 };
        i += 8;
    }
    let mut inside = inside != 0;
    for (at, &b) in bytes.iter().enumerate().skip(i) {
        match b {
            b'"' => inside = !inside,
            b'\\' => return None,
            b'}' if !inside => return Some(at),
            _ => {}
        }
    }
    None
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// JSON's whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// `byte`, after whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `null`, if it is next (whitespace already skipped).
    fn null(&mut self) -> bool {
        let null = self.bytes[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    /// A string without escapes or control characters, after whitespace.
    fn string(&mut self) -> Option<&'a str> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let end = string_end(self.bytes, start)?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends sit at ASCII bytes of a valid UTF-8 text: character boundaries.
        Some(&self.text[start..end])
    }

    /// A number as JSON writes it (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`), its text.
    fn number(&mut self) -> Option<&'a str> {
        self.ws();
        let bytes = self.bytes;
        let start = self.at;
        let mut i = start;
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i),
            _ => return None,
        }
        if bytes.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.at = i;
        Some(&self.text[start..i])
    }

    /// An integer of at most `digits` digits with nothing after it (no fraction, no exponent):
    /// its sign and magnitude, read in one pass. Otherwise `None`, and nothing is consumed.
    fn integer(&mut self, digits: usize) -> Option<(bool, i64)> {
        self.ws();
        let bytes = self.bytes;
        let negative = bytes.get(self.at) == Some(&b'-');
        let start = self.at + usize::from(negative);
        let mut i = start;
        let mut n: i64 = 0;
        while let Some(&b) = bytes.get(i)
            && b.is_ascii_digit()
        {
            if i - start == digits {
                return None;
            }
            n = n * 10 + i64::from(b - b'0');
            i += 1;
        }
        // JSON has no leading zeros; a fraction or exponent is for `number`.
        if i == start || (bytes[start] == b'0' && i - start > 1) || matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = i;
        Some((negative, n))
    }

    /// A number as a finite double: an integer of up to 15 digits (exact as a double, |n| <
    /// 2^53) in one pass, any other by `str::parse`. `None` for infinity (serde refuses it).
    fn value(&mut self) -> Option<f64> {
        let value = match self.integer(15) {
            Some((negative, n)) => {
                if negative {
                    -(n as f64)
                } else {
                    n as f64
                }
            }
            None => self.number()?.parse().ok()?,
        };
        value.is_finite().then_some(value)
    }

    /// An array, each item read by `item` (which skips its own leading whitespace).
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// After an item of an array or a member of an object: `true` when a `,` says another
    /// follows, `false` when `close` ends it (either consumed), `None` for anything else.
    #[inline]
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let next = self.peek()?;
        self.at += 1;
        if next == b',' { Some(true) } else { (next == close).then_some(false) }
    }

    /// An object of string values, its text (what serde's `RawValue` would have taken).
    fn labels(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.at;
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                self.string()?;
                self.eat(b':')?;
                self.string()?;
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        Some(&self.text[start..self.at])
    }

    /// A sample's `labels` object, its text: only its end is found here (`object_end`). The
    /// request's `Interner` parses each distinct text once with serde (which refuses what is
    /// not an object of strings, and the body goes to the serde path then), and a text equal to
    /// one parsed before is that object again.
    fn labels_text(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.at;
        self.eat(b'{')?;
        let end = object_end(self.bytes, self.at)?;
        self.at = end + 1;
        Some(&self.text[start..self.at])
    }

    /// A sample's key, told by its first letter and then compared whole with its closing
    /// quote, so no string is scanned for it. Any other key (or one with an escape) is `None`.
    #[inline]
    fn key(&mut self) -> Option<Key> {
        self.ws();
        let rest = self.bytes.get(self.at..)?;
        let (key, text): (_, &[u8]) = match rest.get(1)? {
            b'm' => (Key::Metric, b"\"metric\""),
            b'v' => (Key::Value, b"\"value\""),
            b't' => (Key::Ts, b"\"ts\""),
            b'l' => (Key::Labels, b"\"labels\""),
            b'd' => (Key::DedupeId, b"\"dedupe_id\""),
            _ => return None,
        };
        rest.starts_with(text).then(|| {
            self.at += text.len();
            key
        })
    }

    /// One sample object; a field twice, or one the schema does not have, is for the serde
    /// path to name.
    fn sample(&mut self) -> Option<Fields<'a>> {
        self.eat(b'{')?;
        let mut metric = None;
        let mut value = None;
        let mut ts = None;
        let mut labels = None;
        let mut dedupe_id = None;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let key = self.key()?;
                self.eat(b':')?;
                self.ws();
                let null = self.null();
                match key {
                    Key::Metric if metric.is_none() => metric = Some(if null { None } else { Some(self.string()?) }),
                    Key::Value if value.is_none() && !null => value = Some(self.value()?),
                    Key::Ts if ts.is_none() => ts = Some(if null { None } else { Some(self.ts()?) }),
                    Key::Labels if labels.is_none() => {
                        labels = Some(if null { None } else { Some(self.labels_text()?) })
                    }
                    Key::DedupeId if dedupe_id.is_none() => {
                        dedupe_id = Some(if null { None } else { Some(self.string()?) })
                    }
                    _ => return None,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        Some(Fields {
            metric: metric.flatten().map(Cow::Borrowed),
            value: value?,
            ts: ts.flatten(),
            labels: labels.flatten(),
            dedupe_id: dedupe_id.flatten().map(Cow::Borrowed),
        })
    }

    /// Unix milliseconds as a plain integer, or an RFC 3339 string. Signs, fractions,
    /// exponents and values past 18 digits go the careful way.
    fn ts(&mut self) -> Option<i64> {
        if self.peek()? == b'"' {
            return parse_rfc3339_ms(self.string()?);
        }
        match self.integer(18)? {
            (false, ts) => Some(ts),
            (true, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The word-wide search finds what a byte-by-byte one finds, at every offset, with the
        /// stop bytes, their neighbours and UTF-8 bytes mixed in.
        #[test]
        fn string_end_is_the_first_stop_byte(
            bytes in prop::collection::vec(
                prop::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x5b, 0x5d, b'a', 0x7f, 0x80, 0xc3, 0xff]),
                0..40,
            ),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let expected = bytes[from..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| from + i);
            prop_assert_eq!(super::string_end(&bytes, from), expected);
        }

        /// The word-wide object end is the first `}` outside quotes a byte-by-byte walk finds,
        /// or `None` at a backslash before it, across word boundaries and from any offset.
        #[test]
        fn object_end_is_the_first_brace_outside_a_string(
            bytes in prop::collection::vec(
                prop::sample::select(vec![b'"', b'\\', b'}', b'{', b':', b',', b' ', b'a', 0x00, 0x7f, 0x80, 0xfd]),
                0..48,
            ),
            from in 0usize..48,
        ) {
            let from = from.min(bytes.len());
            let mut inside = false;
            let mut expected = None;
            for (at, &b) in bytes.iter().enumerate().skip(from) {
                match b {
                    b'"' => inside = !inside,
                    b'\\' => break,
                    b'}' if !inside => {
                        expected = Some(at);
                        break;
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(super::object_end(&bytes, from), expected);
        }
    }
}

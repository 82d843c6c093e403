//! The compressed chunk: the samples of one series in one time window, in a few bytes each.
//!
//! Timestamps are stored as delta-of-deltas and values as the XOR of each value with the one
//! before, both in variable-length bit codes, as in Facebook's Gorilla paper (Pelkonen et al.,
//! VLDB 2015, §4.1) and Prometheus TSDB's `chunkenc/xor.go`. The timestamp buckets are the
//! ones Prometheus chose for millisecond timestamps, with a first bucket of ±63 ms for the
//! jitter of an agent's 10 s tick.
//!
//! XOR compresses values that repeat or barely change, but a gauge with two decimals that moves
//! every sample (a CPU percentage) still costs ~6 bytes. So, like VictoriaMetrics (which turns
//! floats into decimal mantissas before compressing), a chunk whose values are all exact
//! decimals `m / 10^e` (e ≤ 15, |m| ≤ 2^53) is also tried as the integers `m`, once as deltas
//! (gauges: a random walk) and once as delta-of-deltas (counters at a steady rate), in the same
//! bit codes as the timestamps. The encoder keeps the smallest; the first byte says which, and
//! `decode` checks nothing else: `encode` kept a decimal form only if every value came back
//! bit for bit.
//!
//! Layout: `kind: u8`, `count: varint`, [`e: u8` for the decimal kinds], then the bit stream.
//! Every encoding round-trips exactly, NaN payloads and the sign of zero included.

/// Width of a chunk's time window in ms: 2 h, Prometheus' head block. Samples of a series
/// whose timestamps fall in one window share a chunk.
pub const WINDOW_MS: i64 = 2 * 3_600_000;

/// Width of a 5m rollup chunk's window: a day (288 buckets). A 2 h window would hold 24, and a
/// month's query would read 360 small chunks per series instead of 30.
pub const DAY_WINDOW_MS: i64 = 86_400_000;

/// Start of the window holding `ts`.
pub fn window_of(ts: i64) -> i64 {
    window_in(ts, WINDOW_MS)
}

/// Start of the window of width `span` holding `ts`.
pub fn window_in(ts: i64, span: i64) -> i64 {
    ts - ts.rem_euclid(span)
}

use super::Summary;

const KIND_XOR: u8 = 1;
/// Decimal mantissas as delta-of-deltas.
const KIND_DEC_DOD: u8 = 2;
/// Decimal mantissas as deltas.
const KIND_DEC_DELTA: u8 = 3;

/// Largest decimal exponent tried: 10^15 < 2^53, exact as an f64.
const MAX_EXPONENT: usize = 15;
const POW10: [f64; MAX_EXPONENT + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(&'static str);

/// Encodes points (in strictly increasing time order) as the smallest of the encodings.
pub fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    debug_assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "chunk points must be in time order");
    let mut best = encode_with(points, KIND_XOR, 0, &[]);
    if let Some((exponent, mantissas)) = decimal_form(points) {
        for kind in [KIND_DEC_DELTA, KIND_DEC_DOD] {
            let candidate = encode_with(points, kind, exponent, &mantissas);
            if candidate.len() < best.len() {
                best = candidate;
            }
        }
    }
    best
}

fn from_mantissa(m: i64, exponent: u8) -> f64 {
    m as f64 / POW10[exponent as usize]
}

/// The smallest exponent `e` at which every value is exactly `m / 10^e`, and those `m`.
fn decimal_form(points: &[(i64, f64)]) -> Option<(u8, Vec<i64>)> {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    let exact = |v: f64, e: usize| -> Option<i64> {
        let m = (v * POW10[e]).round();
        (m.abs() <= LIMIT && from_mantissa(m as i64, e as u8).to_bits() == v.to_bits()).then_some(m as i64)
    };
    let mut exponent = 0usize;
    for &(_, v) in points {
        if !v.is_finite() {
            return None;
        }
        while exact(v, exponent).is_none() {
            exponent += 1;
            if exponent > MAX_EXPONENT {
                return None;
            }
        }
    }
    let mantissas: Option<Vec<i64>> = points.iter().map(|&(_, v)| exact(v, exponent)).collect();
    Some((exponent as u8, mantissas?))
}

fn encode_with(points: &[(i64, f64)], kind: u8, exponent: u8, mantissas: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 2 + 16);
    out.push(kind);
    put_varint(&mut out, points.len() as u64);
    if kind != KIND_XOR {
        out.push(exponent);
    }
    let mut bits = BitWriter { out, acc: 0, used: 0 };
    let mut prev_ts = 0i64;
    let mut prev_delta = 0i64;
    let mut prev_bits = 0u64;
    let mut leading = u32::MAX;
    let mut trailing = 0u32;
    let mut prev_int = 0i64;
    let mut prev_int_delta = 0i64;
    for (i, &(ts, value)) in points.iter().enumerate() {
        match i {
            0 => bits.write(zigzag(ts), 64),
            1 => {
                prev_delta = ts.wrapping_sub(prev_ts);
                put_dod(&mut bits, prev_delta);
            }
            _ => {
                let delta = ts.wrapping_sub(prev_ts);
                put_dod(&mut bits, delta.wrapping_sub(prev_delta));
                prev_delta = delta;
            }
        }
        prev_ts = ts;
        if kind != KIND_XOR {
            let v = mantissas[i];
            let delta = v - prev_int;
            match i {
                0 => bits.write(zigzag(v), 64),
                _ if kind == KIND_DEC_DELTA => put_dod(&mut bits, delta),
                1 => put_dod(&mut bits, delta),
                _ => put_dod(&mut bits, delta - prev_int_delta),
            }
            prev_int_delta = delta;
            prev_int = v;
            continue;
        }
        let v = value.to_bits();
        if i == 0 {
            bits.write(v, 64);
            prev_bits = v;
            continue;
        }
        let x = v ^ prev_bits;
        prev_bits = v;
        if x == 0 {
            bits.write(0, 1);
            continue;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if leading != u32::MAX && lead >= leading && trail >= trailing {
            // The meaningful bits fit in the previous window.
            bits.write(0b10, 2);
            bits.write(x >> trailing, 64 - leading - trailing);
        } else {
            leading = lead;
            trailing = trail;
            let meaningful = 64 - lead - trail;
            bits.write(0b11, 2);
            bits.write(lead as u64, 5);
            // 64 meaningful bits are written as 0: 1..=64 fits in 6 bits that way.
            bits.write((meaningful & 63) as u64, 6);
            bits.write(x >> trail, meaningful);
        }
    }
    bits.finish()
}

/// Decodes a chunk made by `encode`.
pub fn decode(data: &[u8]) -> Result<Vec<(i64, f64)>, CorruptChunk> {
    let points = Points::of(data)?;
    let mut out = Vec::with_capacity(points.count);
    points.each(|_, ts, value| out.push((ts, value)))?;
    Ok(out)
}

/// A chunk made by `encode` whose header was read: the points are decoded by `each` without
/// being collected.
struct Points<'a> {
    kind: u8,
    exponent: u8,
    /// How many points there are (checked against the data's length).
    count: usize,
    bits: BitReader<'a>,
}

impl<'a> Points<'a> {
    fn of(data: &'a [u8]) -> Result<Self, CorruptChunk> {
        let (&kind, rest) = data.split_first().ok_or(CorruptChunk("empty"))?;
        if !matches!(kind, KIND_XOR | KIND_DEC_DOD | KIND_DEC_DELTA) {
            return Err(CorruptChunk("unknown encoding"));
        }
        let (count, mut used) = get_varint(rest).ok_or(CorruptChunk("bad count"))?;
        let mut exponent = 0u8;
        if kind != KIND_XOR {
            exponent = *rest.get(used).ok_or(CorruptChunk("truncated"))?;
            if exponent as usize > MAX_EXPONENT {
                return Err(CorruptChunk("bad exponent"));
            }
            used += 1;
        }
        let bits = BitReader { data: &rest[used..], pos: 0 };
        // Every point takes at least two bits: a bound that stops a corrupt count early.
        if count > (bits.data.len() as u64 * 8) / 2 + 1 {
            return Err(CorruptChunk("count past the data"));
        }
        Ok(Points { kind, exponent, count: count as usize, bits })
    }

    /// Hands every point with its index to `each`, in order.
    fn each(self, mut each: impl FnMut(usize, i64, f64)) -> Result<(), CorruptChunk> {
        let Points { kind, exponent, count, mut bits } = self;
        let mut ts = 0i64;
        let mut delta = 0i64;
        let mut prev_bits = 0u64;
        let mut leading = 0u32;
        let mut trailing = 0u32;
        let mut int = 0i64;
        let mut int_delta = 0i64;
        for i in 0..count {
            match i {
                0 => ts = unzigzag(bits.read(64)?),
                1 => {
                    delta = get_dod(&mut bits)?;
                    ts = ts.wrapping_add(delta);
                }
                _ => {
                    delta = delta.wrapping_add(get_dod(&mut bits)?);
                    ts = ts.wrapping_add(delta);
                }
            }
            let value = if kind != KIND_XOR {
                let step = match i {
                    0 => {
                        int = unzigzag(bits.read(64)?);
                        0
                    }
                    _ if kind == KIND_DEC_DELTA => get_dod(&mut bits)?,
                    1 => get_dod(&mut bits)?,
                    _ => int_delta.wrapping_add(get_dod(&mut bits)?),
                };
                int = int.wrapping_add(step);
                int_delta = step;
                from_mantissa(int, exponent)
            } else {
                if i == 0 {
                    prev_bits = bits.read(64)?;
                } else if bits.read(1)? == 1 {
                    if bits.read(1)? == 1 {
                        leading = bits.read(5)? as u32;
                        let meaningful = match bits.read(6)? as u32 {
                            0 => 64,
                            n => n,
                        };
                        if leading + meaningful > 64 {
                            return Err(CorruptChunk("bad value window"));
                        }
                        trailing = 64 - leading - meaningful;
                    }
                    let meaningful = 64 - leading - trailing;
                    prev_bits ^= bits.read(meaningful)? << trailing;
                }
                f64::from_bits(prev_bits)
            };
            each(i, ts, value);
        }
        Ok(())
    }
}

/// Encodes rollup buckets `(bucket start, summary)` (in time order) as five chunks, one per
/// column (count, sum, min, max against the bucket times; last against its own time), each
/// with its length in front. A regular bucket clock costs a bit per bucket and column.
pub fn encode_summaries(buckets: &[(i64, Summary)]) -> Vec<u8> {
    let columns: [Vec<(i64, f64)>; 5] = [
        buckets.iter().map(|(b, s)| (*b, s.count as f64)).collect(),
        buckets.iter().map(|(b, s)| (*b, s.sum)).collect(),
        buckets.iter().map(|(b, s)| (*b, s.min)).collect(),
        buckets.iter().map(|(b, s)| (*b, s.max)).collect(),
        buckets.iter().map(|(_, s)| (s.last_ts, s.last)).collect(),
    ];
    let mut out = Vec::new();
    for column in &columns {
        let data = encode(column);
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(&data);
    }
    out
}

/// The columns of a rollup chunk a reader needs besides bucket starts and counts, which always
/// come: a month's average decodes 2 of the 5 columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub sum: bool,
    pub min: bool,
    pub max: bool,
    /// `last` and `last_ts`.
    pub last: bool,
}

impl Columns {
    pub const ALL: Columns = Columns { sum: true, min: true, max: true, last: true };
    /// Bucket starts and counts only.
    pub const NONE: Columns = Columns { sum: false, min: false, max: false, last: false };
}

/// Decodes what `encode_summaries` made.
pub fn decode_summaries(data: &[u8]) -> Result<Vec<(i64, Summary)>, CorruptChunk> {
    decode_summary_columns(data, Columns::ALL)
}

/// Decodes the `wanted` columns of what `encode_summaries` made; the fields of the others are
/// 0 (a reader that did not want them does not look at them, and merging two buckets combines
/// each field on its own).
pub fn decode_summary_columns(data: &[u8], wanted: Columns) -> Result<Vec<(i64, Summary)>, CorruptChunk> {
    let mut out = Vec::new();
    append_summary_columns(data, wanted, &mut out)?;
    Ok(out)
}

/// `decode_summary_columns` appending to `out`. Each column is decoded straight into the
/// buckets: the count column makes them, the others fill in their field by index.
pub fn append_summary_columns(
    mut data: &[u8],
    wanted: Columns,
    out: &mut Vec<(i64, Summary)>,
) -> Result<(), CorruptChunk> {
    let want = [true, wanted.sum, wanted.min, wanted.max, wanted.last];
    let base = out.len();
    for (column, wanted) in want.into_iter().enumerate() {
        let (len, used) = get_varint(data).ok_or(CorruptChunk("bad column length"))?;
        let end = used.checked_add(len as usize).filter(|&e| e <= data.len()).ok_or(CorruptChunk("truncated"))?;
        let bytes = &data[used..end];
        data = &data[end..];
        if !wanted {
            continue;
        }
        if column == 0 {
            let points = Points::of(bytes)?;
            out.reserve(points.count);
            points
                .each(|_, bucket, count| out.push((bucket, Summary { count: count as i64, ..Summary::default() })))?;
            continue;
        }
        let buckets = &mut out[base..];
        let n = buckets.len();
        let points = Points::of(bytes)?;
        if points.count != n {
            return Err(CorruptChunk("columns of different lengths"));
        }
        match column {
            1 => points.each(|i, _, v| buckets[i].1.sum = v)?,
            2 => points.each(|i, _, v| buckets[i].1.min = v)?,
            3 => points.each(|i, _, v| buckets[i].1.max = v)?,
            _ => points.each(|i, ts, v| {
                buckets[i].1.last = v;
                buckets[i].1.last_ts = ts;
            })?,
        }
    }
    Ok(())
}

/// Merges two point lists in time order; at an equal timestamp `newer` wins.
pub fn merge<T>(older: Vec<(i64, T)>, newer: Vec<(i64, T)>) -> Vec<(i64, T)> {
    if older.is_empty() {
        return newer;
    }
    if newer.is_empty() {
        return older;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut a, mut b) = (older.into_iter().peekable(), newer.into_iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 < y.0 => out.push(a.next().expect("peeked")),
            (Some(x), Some(y)) if x.0 == y.0 => {
                a.next();
                out.push(b.next().expect("peeked"));
            }
            (_, Some(_)) => out.push(b.next().expect("peeked")),
            (Some(_), None) => out.push(a.next().expect("peeked")),
            (None, None) => return out,
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Delta-of-delta buckets: `0`; `10` + 7 bits; `110` + 14; `1110` + 20; `1111` + 64.
fn put_dod(bits: &mut BitWriter, dod: i64) {
    let fits = |n: u32| dod > -(1i64 << (n - 1)) && dod <= 1i64 << (n - 1);
    if dod == 0 {
        bits.write(0, 1);
    } else if fits(7) {
        bits.write(0b10, 2);
        bits.write(dod as u64 & 0x7f, 7);
    } else if fits(14) {
        bits.write(0b110, 3);
        bits.write(dod as u64 & 0x3fff, 14);
    } else if fits(20) {
        bits.write(0b1110, 4);
        bits.write(dod as u64 & 0xf_ffff, 20);
    } else {
        bits.write(0b1111, 4);
        bits.write(dod as u64, 64);
    }
}

fn get_dod(bits: &mut BitReader) -> Result<i64, CorruptChunk> {
    // The prefix and its payload (at most 4 + 20 bits) come from one look at the next 64 bits.
    let word = bits.peek();
    let ones = word.leading_ones().min(4);
    let width = match ones {
        0 => {
            bits.skip(1)?;
            return Ok(0);
        }
        1 => 7,
        2 => 14,
        3 => 20,
        _ => {
            bits.skip(4)?;
            return Ok(bits.read(64)? as i64);
        }
    };
    let prefix = ones + 1;
    bits.skip(prefix + width)?;
    let raw = ((word << prefix) >> (64 - width)) as i64;
    // Values above half the range are the negative ones (and +2^(n-1) itself, see `put_dod`).
    Ok(if raw > 1i64 << (width - 1) { raw - (1i64 << width) } else { raw })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Bits appended most significant first, through a 64-bit accumulator. Written here rather than
/// taken from a bit-I/O crate: it is the inner loop of every compaction and read, and a dozen
/// lines.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    /// Bits held in `acc` (0..=7 between calls: whole bytes go straight out).
    used: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `v` (`n` ≤ 64).
    fn write(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        if n > 32 {
            self.write(v >> 32, n - 32);
            self.write(v & 0xffff_ffff, 32);
            return;
        }
        let v = v & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.used += n;
        while self.used >= 8 {
            self.used -= 8;
            self.out.push((self.acc >> self.used) as u8);
        }
        self.acc &= (1u64 << self.used) - 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.out.push((self.acc << (8 - self.used)) as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl BitReader<'_> {
    /// The next 64 bits, most significant first, without moving; bits past the end read as 0
    /// (`skip` and `read` check the end).
    #[inline]
    fn peek(&self) -> u64 {
        let byte = self.pos / 8;
        match self.data.get(byte..byte + 9) {
            // Straight from the slice: a copy into a buffer first costs a store-to-load stall
            // per read, which made this slower than reading bit by bit.
            Some(bytes) => Self::bits_at(bytes[..8].try_into().expect("8 bytes"), bytes[8], self.pos),
            None => self.peek_near_end(byte),
        }
    }

    #[cold]
    fn peek_near_end(&self, byte: usize) -> u64 {
        let mut nine = [0u8; 9];
        let rest = self.data.get(byte..).unwrap_or(&[]);
        nine[..rest.len()].copy_from_slice(rest);
        Self::bits_at(nine[..8].try_into().expect("8 bytes"), nine[8], self.pos)
    }

    /// The 64 bits from bit `pos % 8` of `head` on, the last ones taken from `next`.
    #[inline]
    fn bits_at(head: [u8; 8], next: u8, pos: usize) -> u64 {
        let offset = (pos % 8) as u32;
        // At offset 0 the byte shifts out whole (a u64 shifted by 8).
        (u64::from_be_bytes(head) << offset) | (u64::from(next) >> (8 - offset))
    }

    #[inline]
    fn skip(&mut self, n: u32) -> Result<(), CorruptChunk> {
        if self.pos + n as usize > self.data.len() * 8 {
            return Err(CorruptChunk("truncated"));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// The next `n` bits (`n` ≤ 64) as the low bits of the answer.
    #[inline]
    fn read(&mut self, n: u32) -> Result<u64, CorruptChunk> {
        if n == 0 {
            return Ok(0);
        }
        let v = self.peek() >> (64 - n);
        self.skip(n)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    fn series(start: i64, step: i64, values: impl IntoIterator<Item = f64>) -> Vec<(i64, f64)> {
        values.into_iter().enumerate().map(|(i, v)| (start + i as i64 * step, v)).collect()
    }

    #[test]
    fn special_values_round_trip_bit_for_bit() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1.0,
            1.0,
            -3.5,
            9_007_199_254_740_992.0,
        ];
        let points = series(-5_000, 10_000, values);
        assert!(same(&decode(&encode(&points)).unwrap(), &points));
        // Timestamps at the ends of i64 and a jump across all of it.
        let points = vec![(i64::MIN, 1.0), (-1, 2.0), (0, 3.0), (i64::MAX, 4.0)];
        assert!(same(&decode(&encode(&points)).unwrap(), &points));
        assert!(decode(&encode(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_two_decimal_gauge_takes_the_decimal_deltas() {
        // CPU-like: two decimals, wandering; timestamps with a few ms of jitter.
        let mut v = 37.25f64;
        let points: Vec<(i64, f64)> = (0..720)
            .map(|i| {
                v = ((v + ((i * 7919) % 13) as f64 * 0.05 - 0.3).clamp(0.0, 100.0) * 100.0).round() / 100.0;
                (1_700_000_000_000 + i * 10_000 + (i * 31) % 7, v)
            })
            .collect();
        let data = encode(&points);
        assert!(same(&decode(&data).unwrap(), &points));
        let per_sample = data.len() as f64 / points.len() as f64;
        assert_eq!(data[0], KIND_DEC_DELTA);
        assert!(per_sample < 2.5, "{per_sample} bytes per sample");
        // The same walk with 15 digits after the point leaves XOR the best choice.
        let noisy: Vec<(i64, f64)> = points.iter().map(|&(t, v)| (t, v + 1e-3 / 3.0)).collect();
        assert!(same(&decode(&encode(&noisy)).unwrap(), &noisy));
        // A constant and a regular clock cost about two bits a sample.
        let flat = series(1_700_000_000_000, 10_000, std::iter::repeat_n(1.0, 720));
        assert!(encode(&flat).len() < 720 / 4 + 32, "{}", encode(&flat).len());
    }

    #[test]
    fn integer_counters_take_the_decimal_encoding() {
        let mut total = 1_000_000_000.0f64;
        let points: Vec<(i64, f64)> = (0..720)
            .map(|i| {
                total += 1_000.0 + ((i * 37) % 200) as f64;
                (1_700_000_000_000 + i * 10_000, total)
            })
            .collect();
        let data = encode(&points);
        assert_eq!(data[0], KIND_DEC_DOD);
        assert!(data.len() < encode_with(&points, KIND_XOR, 0, &[]).len(), "{}", data.len());
        assert!(same(&decode(&data).unwrap(), &points));
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        // A chunk of each value encoding, cut short anywhere: the last byte holds bits of the
        // last point, so every cut is missing some (the reader looks 64 bits ahead and must
        // not take the zeros past the end for data).
        let chunks = [
            encode(&series(0, 1000, (0..100).map(|i| f64::from(i).sqrt()))),
            encode(&series(0, 1000, (0..100).map(|i| f64::from(i * i % 17) / 100.0))),
            encode(&series(0, 1000, (0..100).map(|i| f64::from(i) * 4096.0))),
        ];
        assert_eq!(chunks.iter().map(|c| c[0]).collect::<Vec<_>>(), [KIND_XOR, KIND_DEC_DELTA, KIND_DEC_DOD]);
        for data in &chunks {
            assert_eq!(decode(data).unwrap().len(), 100);
            for cut in 0..data.len() {
                assert!(decode(&data[..cut]).is_err(), "a chunk cut to {cut} of {} bytes decoded", data.len());
            }
        }
        let rollup = encode_summaries(&[(0, Summary::of(0, 1.5)), (60_000, Summary::of(60_001, 2.5))]);
        for cut in 0..rollup.len() {
            assert!(decode_summaries(&rollup[..cut]).is_err());
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 0]).is_err());
        assert!(decode(&[KIND_XOR, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn rollup_buckets_round_trip() {
        let buckets: Vec<(i64, Summary)> = (0..120)
            .map(|i| {
                let b = 1_700_000_040_000 + i * 60_000;
                let v = (i % 17) as f64 * 0.25;
                (
                    b,
                    Summary {
                        count: 6 - i % 2,
                        sum: v * 6.0 + 0.1,
                        min: v,
                        max: v + 1.5,
                        last: v + 0.5,
                        last_ts: b + 50_003,
                    },
                )
            })
            .collect();
        let data = encode_summaries(&buckets);
        assert_eq!(decode_summaries(&data).unwrap(), buckets);
        assert!(data.len() < 120 * 12, "{} bytes for 120 buckets", data.len());
        assert!(decode_summaries(&data[..data.len() - 1]).is_err());
        assert!(decode_summaries(&encode_summaries(&[])).unwrap().is_empty());
        // Only some columns: those fields and the counts as in the full decode, the rest 0.
        let none = Columns::NONE;
        for wanted in
            [none, Columns { sum: true, ..none }, Columns { max: true, ..none }, Columns { last: true, ..none }]
        {
            let some = decode_summary_columns(&data, wanted).unwrap();
            assert_eq!(some.len(), buckets.len());
            for ((b, s), (bucket, full)) in some.iter().zip(&buckets) {
                assert_eq!((b, s.count), (bucket, full.count));
                assert_eq!(s.sum, if wanted.sum { full.sum } else { 0.0 });
                assert_eq!(s.min, 0.0);
                assert_eq!(s.max, if wanted.max { full.max } else { 0.0 });
                assert_eq!((s.last, s.last_ts), if wanted.last { (full.last, full.last_ts) } else { (0.0, 0) });
            }
        }
        assert!(decode_summary_columns(&data[..data.len() - 1], none).is_err(), "a cut chunk is refused all the same");
    }

    #[test]
    fn merge_keeps_time_order_and_the_newer_value() {
        let older = vec![(1, 1.0), (3, 3.0), (5, 5.0)];
        let newer = vec![(2, 20.0), (3, 30.0), (6, 60.0)];
        assert_eq!(merge(older, newer), vec![(1, 1.0), (2, 20.0), (3, 30.0), (5, 5.0), (6, 60.0)]);
    }

    proptest! {
        #[test]
        fn any_points_round_trip(
            start in any::<i64>(),
            steps in proptest::collection::vec(1i64..100_000_000, 0..300),
            values in proptest::collection::vec(any::<f64>(), 300),
            ints in proptest::collection::vec(-1_000_000i64..1_000_000, 300),
        ) {
            let mut ts = start;
            let mut points = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                points.push((ts, values[i]));
                ts = match ts.checked_add(*step) { Some(t) => t, None => break };
            }
            prop_assert!(same(&decode(&encode(&points)).unwrap(), &points));
            let as_ints: Vec<(i64, f64)> = points.iter().zip(&ints).map(|(p, &v)| (p.0, v as f64)).collect();
            prop_assert!(same(&decode(&encode(&as_ints)).unwrap(), &as_ints));
        }

        #[test]
        fn any_bytes_decode_to_an_answer_or_an_error(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data);
            let _ = decode_summaries(&data);
        }
    }
}

//! The compressed chunk: the samples of one series in one time window, in a few bytes each.
//!
//! The first encodings (kinds 1–3, still read) followed Facebook's Gorilla paper (Pelkonen et
//! al., VLDB 2015, §4.1) and Prometheus TSDB's `chunkenc/xor.go`: timestamps as delta-of-deltas
//! and values as the XOR of each value with the one before, in variable-length bit codes; and,
//! like VictoriaMetrics (which turns floats into decimal mantissas before compressing), values
//! that are all exact decimals `m / 10^e` (e ≤ 15, |m| ≤ 2^53) as the integers `m`, in deltas or
//! delta-of-deltas in the same bit codes.
//!
//! Gorilla's bit codes are fixed buckets (1, 9, 17, 24 or 68 bits): an agent's clock with a few
//! ms of jitter pays 9 bits a sample for 3 bits of information, and a gauge moving in 4 KiB
//! pages pays 24. So `encode` now writes the packed kind (4): timestamps as their step's
//! deviation from the chunk's median step or as offsets from the grid of that step (an agent's
//! ticker: one jitter per sample instead of the difference of two), values as decimal deltas or delta-of-deltas divided
//! by their greatest common divisor (or as Gorilla's XOR when they are not decimals), and each of
//! the two integer columns in the cheapest of three codes for that chunk, chosen from the
//! column's histogram: the Gorilla buckets; a fixed width above a base with an escape to 64 bits
//! for outliers (patched frame of reference, as in PForDelta: Zukowski et al., ICDE 2006); a
//! zero flag in front of that, for columns that are mostly unchanged; or, since 2026-12-06, one
//! value for a column that never changes. The kind and the codes are in the chunk; `decode`
//! reads all four kinds.
//!
//! Layouts: kinds 1–3: `kind: u8`, `count: varint`, [`e: u8` for the decimal kinds], then one bit
//! stream of (timestamp, value) codes. Kind 4: `kind`, `count`, `first timestamp`, `median step`
//! (zigzag varints), `time form: u8` (0 = steps, 1 = grid offsets), `timestamp section length`
//! (varint) and that section (its code, then
//! `count - 1` deviations), then the values: `0` and a Gorilla XOR bit stream, or `1`, `e: u8`,
//! `order: u8` (1 = deltas, 2 = delta-of-deltas), `divisor: varint`, `first mantissa` (zigzag
//! varint), then the code and `count - 1` integers. Every encoding round-trips exactly, NaN
//! payloads and the sign of zero included.

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
/// Timestamps and values in columns of chosen integer codes (see the module's docs).
const KIND_PACKED: u8 = 4;

/// The values of a packed chunk: Gorilla's XOR stream, or decimal mantissas.
const VALUES_XOR: u8 = 0;
const VALUES_DECIMAL: u8 = 1;

/// The timestamps of a packed chunk: each one's step against the median step, or its offset
/// from the grid of the median step.
const TIMES_STEPS: u8 = 0;
const TIMES_GRID: u8 = 1;

/// Largest decimal exponent tried: 10^15 < 2^53, exact as an f64.
const MAX_EXPONENT: usize = 15;
const POW10: [f64; MAX_EXPONENT + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(&'static str);

/// Encodes points (in strictly increasing time order) in the packed layout, with the cheapest
/// value form and integer codes for them.
pub fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    debug_assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "chunk points must be in time order");
    let mut out = Vec::with_capacity(points.len() * 2 + 32);
    out.push(KIND_PACKED);
    put_varint(&mut out, points.len() as u64);
    let Some(&(first_ts, _)) = points.first() else { return out };
    let deltas: Vec<i64> = points.windows(2).map(|w| w[1].0.wrapping_sub(w[0].0)).collect();
    let step = median(&deltas);
    // Each timestamp against the one before plus the step, or against the grid `first + i·step`
    // (an agent's ticker keeps to a grid: its jitter is then one offset, not the difference of
    // two); the cheaper column is kept.
    let deviations: Vec<i64> = deltas.iter().map(|d| d.wrapping_sub(step)).collect();
    let offsets: Vec<i64> = points
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, p)| p.0.wrapping_sub(first_ts.wrapping_add(step.wrapping_mul(i as i64))))
        .collect();
    let (grid, steps) = (choose_code(&offsets), choose_code(&deviations));
    let (form, column, code) =
        if grid.1 < steps.1 { (TIMES_GRID, offsets, grid.0) } else { (TIMES_STEPS, deviations, steps.0) };
    let mut times = BitWriter::default();
    put_ints(&mut times, &column, code);
    let times = times.finish();
    put_varint(&mut out, zigzag(first_ts));
    put_varint(&mut out, zigzag(step));
    out.push(form);
    put_varint(&mut out, times.len() as u64);
    out.extend_from_slice(&times);

    let mut best = {
        let mut bits = BitWriter { out: vec![VALUES_XOR], ..BitWriter::default() };
        let mut xor = XorWriter::default();
        for (i, &(_, v)) in points.iter().enumerate() {
            xor.put(&mut bits, i, v);
        }
        bits.finish()
    };
    if let Some((exponent, mantissas)) = decimal_form(points) {
        for order in [1u8, 2] {
            let (divisor, items) = decimal_items(&mantissas, order);
            let mut head = vec![VALUES_DECIMAL, exponent, order];
            put_varint(&mut head, divisor);
            put_varint(&mut head, zigzag(mantissas[0]));
            let mut bits = BitWriter { out: head, ..BitWriter::default() };
            put_ints(&mut bits, &items, choose_code(&items).0);
            let candidate = bits.finish();
            if candidate.len() < best.len() {
                best = candidate;
            }
        }
    }
    out.extend_from_slice(&best);
    out
}

/// The middle of `values` (0 for none): the step most timestamps of a chunk keep.
fn median(values: &[i64]) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    let middle = sorted.len() / 2;
    *sorted.select_nth_unstable(middle).1
}

/// The mantissas after the first as deltas (`order` 1) or delta-of-deltas (2), divided by
/// their greatest common divisor (a byte gauge moving in 4096-byte pages stores page counts),
/// and that divisor.
fn decimal_items(mantissas: &[i64], order: u8) -> (u64, Vec<i64>) {
    let mut items = Vec::with_capacity(mantissas.len().saturating_sub(1));
    let mut prev_delta = 0i64;
    for w in mantissas.windows(2) {
        let delta = w[1].wrapping_sub(w[0]);
        items.push(if order == 1 { delta } else { delta.wrapping_sub(prev_delta) });
        prev_delta = delta;
    }
    let divisor = items.iter().fold(0u64, |g, &v| gcd(g, v.unsigned_abs()));
    // Mantissas are at most 2^53, so this never stops a divisor; a corrupt chunk is read as is.
    let divisor = if divisor == 0 || divisor > i64::MAX as u64 { 1 } else { divisor };
    if divisor > 1 {
        for v in &mut items {
            *v /= divisor as i64;
        }
    }
    (divisor, items)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// How a column of integers is written (see the module's docs); the first 2 bits of the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntCode {
    /// Gorilla's buckets, as `put_dod`.
    Buckets,
    /// `value - base` in `width` bits; all ones, then the value's 64 bits, for the outliers.
    Patched { base: i64, width: u32 },
    /// A bit: 0 for a zero; 1, then the value as `Patched`.
    ZeroFlagged { base: i64, width: u32 },
    /// Every value is this one: written once, nothing per value (a gauge that did not move in
    /// the chunk, a clock exactly on its grid, a rollup's count column). Since 2026-12-06; a
    /// reader from before refuses such a chunk as corrupt.
    Constant(i64),
}

const CODE_BUCKETS: u64 = 0;
const CODE_PATCHED: u64 = 1;
const CODE_ZERO_FLAGGED: u64 = 2;
const CODE_CONSTANT: u64 = 3;
/// The most points a packed chunk whose columns take no bits per point may claim: above any
/// chunk written (`chunk_store::MAX_CHUNK_SAMPLES`, a day of 1m buckets).
const CONSTANT_POINTS_BOUND: u64 = 1 << 16;
/// Widths are 1..=63 bits: 6 bits say which.
const WIDTH_BITS: u32 = 6;

/// Bits `put_dod` takes for `v`.
fn bucket_bits(v: i64) -> u64 {
    let fits = |n: u32| v > -(1i64 << (n - 1)) && v <= 1i64 << (n - 1);
    match v {
        0 => 1,
        _ if fits(7) => 9,
        _ if fits(14) => 17,
        _ if fits(20) => 24,
        _ => 68,
    }
}

/// The width at which `values` written above `base` cost the fewest bits, and that cost.
fn patched_cost(values: impl Iterator<Item = i64>, base: i64) -> (u32, u64) {
    // By the bit length of `value - base + 1`: a value fits in `w` bits if that is ≤ w (all
    // ones is the escape); 65 for the one that does not fit in 64.
    let mut lengths = [0u64; 66];
    let mut n = 0u64;
    for v in values {
        let above = (v as u64).wrapping_sub(base as u64);
        let length = above.checked_add(1).map_or(65, |x| 64 - x.leading_zeros());
        lengths[length as usize] += 1;
        n += 1;
    }
    let mut best = (63, u64::MAX);
    let mut fitting = lengths[0];
    for width in 1..=63u32 {
        fitting += lengths[width as usize];
        let cost = n * u64::from(width) + 64 * (n - fitting);
        if cost < best.1 {
            best = (width, cost);
        }
    }
    best
}

/// The cheapest code for `values` and its cost in bits: the buckets, or a patched code above the smallest value or
/// above the value a 32nd of the way up (the few below it escape), with or without zero flags.
fn choose_code(values: &[i64]) -> (IntCode, u64) {
    let mut best = (values.iter().map(|&v| bucket_bits(v)).sum::<u64>(), IntCode::Buckets);
    if values.is_empty() {
        return (IntCode::Buckets, 0);
    }
    let header = |base: i64| bucket_bits(base) + u64::from(WIDTH_BITS);
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted[0] == sorted[sorted.len() - 1] {
        return (IntCode::Constant(sorted[0]), bucket_bits(sorted[0]));
    }
    for base in [sorted[0], sorted[sorted.len() / 32]] {
        let (width, cost) = patched_cost(values.iter().copied(), base);
        if cost + header(base) < best.0 {
            best = (cost + header(base), IntCode::Patched { base, width });
        }
    }
    let nonzero: Vec<i64> = sorted.into_iter().filter(|&v| v != 0).collect();
    if !nonzero.is_empty() && nonzero.len() < values.len() {
        for base in [nonzero[0], nonzero[nonzero.len() / 32]] {
            let (width, cost) = patched_cost(nonzero.iter().copied(), base);
            let cost = cost + values.len() as u64 + header(base);
            if cost < best.0 {
                best = (cost, IntCode::ZeroFlagged { base, width });
            }
        }
    }
    (best.1, best.0)
}

/// Writes `values` as a column in `code` (`choose_code`'s choice for them): the code, then each
/// value.
fn put_ints(bits: &mut BitWriter, values: &[i64], code: IntCode) {
    let patched = |bits: &mut BitWriter, v: i64, base: i64, width: u32| {
        let above = (v as u64).wrapping_sub(base as u64);
        let escape = (1u64 << width) - 1;
        if above < escape {
            bits.write(above, width);
        } else {
            bits.write(escape, width);
            bits.write(v as u64, 64);
        }
    };
    match code {
        IntCode::Buckets => {
            bits.write(CODE_BUCKETS, 2);
            values.iter().for_each(|&v| put_dod(bits, v));
        }
        IntCode::Patched { base, width } => {
            bits.write(CODE_PATCHED, 2);
            put_dod(bits, base);
            bits.write(u64::from(width), WIDTH_BITS);
            values.iter().for_each(|&v| patched(bits, v, base, width));
        }
        IntCode::Constant(value) => {
            bits.write(CODE_CONSTANT, 2);
            put_dod(bits, value);
        }
        IntCode::ZeroFlagged { base, width } => {
            bits.write(CODE_ZERO_FLAGGED, 2);
            put_dod(bits, base);
            bits.write(u64::from(width), WIDTH_BITS);
            for &v in values {
                if v == 0 {
                    bits.write(0, 1);
                } else {
                    bits.write(1, 1);
                    patched(bits, v, base, width);
                }
            }
        }
    }
}

impl IntCode {
    /// Reads a column's code.
    fn read(bits: &mut BitReader) -> Result<Self, CorruptChunk> {
        let code = bits.read(2)?;
        if code == CODE_BUCKETS {
            return Ok(IntCode::Buckets);
        }
        let base = get_dod(bits)?;
        if code == CODE_CONSTANT {
            return Ok(IntCode::Constant(base));
        }
        let width = bits.read(WIDTH_BITS)? as u32;
        if width == 0 {
            return Err(CorruptChunk("bad width"));
        }
        match code {
            CODE_PATCHED => Ok(IntCode::Patched { base, width }),
            CODE_ZERO_FLAGGED => Ok(IntCode::ZeroFlagged { base, width }),
            _ => Err(CorruptChunk("unknown integer code")),
        }
    }

    /// Reads the column's next value.
    #[inline]
    fn next(self, bits: &mut BitReader) -> Result<i64, CorruptChunk> {
        let patched = |bits: &mut BitReader, base: i64, width: u32| -> Result<i64, CorruptChunk> {
            let above = bits.read(width)?;
            if above == (1u64 << width) - 1 {
                return Ok(bits.read(64)? as i64);
            }
            Ok(base.wrapping_add(above as i64))
        };
        match self {
            IntCode::Buckets => get_dod(bits),
            IntCode::Patched { base, width } => patched(bits, base, width),
            IntCode::ZeroFlagged { base, width } => match bits.read(1)? {
                0 => Ok(0),
                _ => patched(bits, base, width),
            },
            IntCode::Constant(value) => Ok(value),
        }
    }
}

/// Gorilla's XOR of each value with the one before, as a writer's state.
#[derive(Default)]
struct XorWriter {
    prev_bits: u64,
    /// The window of meaningful bits, once one was written.
    leading: Option<u32>,
    trailing: u32,
}

impl XorWriter {
    fn put(&mut self, bits: &mut BitWriter, i: usize, value: f64) {
        let v = value.to_bits();
        if i == 0 {
            bits.write(v, 64);
            self.prev_bits = v;
            return;
        }
        let x = v ^ self.prev_bits;
        self.prev_bits = v;
        if x == 0 {
            bits.write(0, 1);
            return;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        match self.leading {
            Some(leading) if lead >= leading && trail >= self.trailing => {
                // The meaningful bits fit in the previous window.
                bits.write(0b10, 2);
                bits.write(x >> self.trailing, 64 - leading - self.trailing);
            }
            _ => {
                self.leading = Some(lead);
                self.trailing = trail;
                let meaningful = 64 - lead - trail;
                bits.write(0b11, 2);
                bits.write(lead as u64, 5);
                // 64 meaningful bits are written as 0: 1..=64 fits in 6 bits that way.
                bits.write((meaningful & 63) as u64, 6);
                bits.write(x >> trail, meaningful);
            }
        }
    }
}

/// Reads what `XorWriter` wrote.
#[derive(Default)]
struct XorReader {
    prev_bits: u64,
    leading: u32,
    trailing: u32,
}

impl XorReader {
    #[inline]
    fn next(&mut self, bits: &mut BitReader, i: usize) -> Result<f64, CorruptChunk> {
        if i == 0 {
            self.prev_bits = bits.read(64)?;
        } else if bits.read(1)? == 1 {
            if bits.read(1)? == 1 {
                self.leading = bits.read(5)? as u32;
                let meaningful = match bits.read(6)? as u32 {
                    0 => 64,
                    n => n,
                };
                if self.leading + meaningful > 64 {
                    return Err(CorruptChunk("bad value window"));
                }
                self.trailing = 64 - self.leading - meaningful;
            }
            let meaningful = 64 - self.leading - self.trailing;
            self.prev_bits ^= bits.read(meaningful)? << self.trailing;
        }
        Ok(f64::from_bits(self.prev_bits))
    }
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

/// The encodings before the packed one (kinds 1–3), kept to test that `decode` still reads
/// the chunks they wrote.
#[cfg(test)]
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
    let mut xor = XorWriter::default();
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
        if kind == KIND_XOR {
            xor.put(&mut bits, i, value);
            continue;
        }
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
    /// How many points there are (checked against the data's length).
    count: usize,
    body: Body<'a>,
}

enum Body<'a> {
    /// Kinds 1–3: one bit stream of (timestamp, value) codes.
    Gorilla { kind: u8, exponent: u8, bits: BitReader<'a> },
    /// Kind 4: a timestamp column and a value column.
    Packed { first_ts: i64, step: i64, grid: bool, times: BitReader<'a>, values: PackedValues<'a> },
}

enum PackedValues<'a> {
    Xor(BitReader<'a>),
    Decimal { exponent: u8, order: u8, divisor: i64, first: i64, bits: BitReader<'a> },
}

impl<'a> Points<'a> {
    fn of(data: &'a [u8]) -> Result<Self, CorruptChunk> {
        let (&kind, rest) = data.split_first().ok_or(CorruptChunk("empty"))?;
        if !matches!(kind, KIND_XOR | KIND_DEC_DOD | KIND_DEC_DELTA | KIND_PACKED) {
            return Err(CorruptChunk("unknown encoding"));
        }
        let mut reader = Bytes(rest);
        let count = reader.varint()?;
        if kind == KIND_PACKED {
            return Self::packed(count, reader);
        }
        let mut exponent = 0u8;
        if kind != KIND_XOR {
            exponent = reader.exponent()?;
        }
        let bits = BitReader { data: reader.0, pos: 0 };
        // Every point takes at least two bits: a bound that stops a corrupt count early.
        if count > (bits.data.len() as u64 * 8) / 2 + 1 {
            return Err(CorruptChunk("count past the data"));
        }
        Ok(Points { count: count as usize, body: Body::Gorilla { kind, exponent, bits } })
    }

    fn packed(count: u64, mut reader: Bytes<'a>) -> Result<Self, CorruptChunk> {
        if count == 0 {
            let empty = || BitReader { data: &[], pos: 0 };
            let body =
                Body::Packed { first_ts: 0, step: 0, grid: false, times: empty(), values: PackedValues::Xor(empty()) };
            return Ok(Points { count: 0, body });
        }
        let first_ts = unzigzag(reader.varint()?);
        let step = unzigzag(reader.varint()?);
        let grid = match reader.byte()? {
            TIMES_STEPS => false,
            TIMES_GRID => true,
            _ => return Err(CorruptChunk("unknown time form")),
        };
        let times_len = reader.varint()?;
        let times = reader.take(times_len)?;
        // Every point after the first takes at least a bit in each column, but where a column is
        // constant: a bound that stops a corrupt count early, and no chunk is written with more
        // points than `CONSTANT_POINTS_BOUND`.
        if count > times.len() as u64 * 8 + 1 && count > CONSTANT_POINTS_BOUND {
            return Err(CorruptChunk("count past the data"));
        }
        let values = match reader.byte()? {
            VALUES_XOR => PackedValues::Xor(BitReader { data: reader.0, pos: 0 }),
            VALUES_DECIMAL => {
                let exponent = reader.exponent()?;
                let order = reader.byte()?;
                if !matches!(order, 1 | 2) {
                    return Err(CorruptChunk("bad order"));
                }
                let divisor = reader.varint()?;
                if divisor == 0 || divisor > i64::MAX as u64 {
                    return Err(CorruptChunk("bad divisor"));
                }
                let first = unzigzag(reader.varint()?);
                let bits = BitReader { data: reader.0, pos: 0 };
                PackedValues::Decimal { exponent, order, divisor: divisor as i64, first, bits }
            }
            _ => return Err(CorruptChunk("unknown value form")),
        };
        let times = BitReader { data: times, pos: 0 };
        Ok(Points { count: count as usize, body: Body::Packed { first_ts, step, grid, times, values } })
    }

    /// Hands every point with its index to `each`, in order.
    fn each(self, mut each: impl FnMut(usize, i64, f64)) -> Result<(), CorruptChunk> {
        let Points { count, body } = self;
        match body {
            Body::Gorilla { kind, exponent, bits } => Self::each_gorilla(count, kind, exponent, bits, each),
            Body::Packed { .. } if count == 0 => Ok(()),
            Body::Packed { first_ts, step, grid, mut times, values } => {
                let time_code = IntCode::read(&mut times)?;
                let mut ts = first_ts;
                let mut grid_ts = first_ts;
                let mut next_ts = |i: usize| -> Result<i64, CorruptChunk> {
                    if i > 0 {
                        let code = time_code.next(&mut times)?;
                        grid_ts = grid_ts.wrapping_add(step);
                        ts = if grid { grid_ts } else { ts.wrapping_add(step) }.wrapping_add(code);
                    }
                    Ok(ts)
                };
                match values {
                    PackedValues::Xor(mut bits) => {
                        let mut xor = XorReader::default();
                        for i in 0..count {
                            let ts = next_ts(i)?;
                            each(i, ts, xor.next(&mut bits, i)?);
                        }
                    }
                    PackedValues::Decimal { exponent, order, divisor, first, mut bits } => {
                        let code = IntCode::read(&mut bits)?;
                        let mut int = first;
                        let mut delta = 0i64;
                        for i in 0..count {
                            let ts = next_ts(i)?;
                            if i > 0 {
                                let item = code.next(&mut bits)?.wrapping_mul(divisor);
                                delta = if order == 1 { item } else { delta.wrapping_add(item) };
                                int = int.wrapping_add(delta);
                            }
                            each(i, ts, from_mantissa(int, exponent));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn each_gorilla(
        count: usize,
        kind: u8,
        exponent: u8,
        mut bits: BitReader,
        mut each: impl FnMut(usize, i64, f64),
    ) -> Result<(), CorruptChunk> {
        let mut ts = 0i64;
        let mut delta = 0i64;
        let mut xor = XorReader::default();
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
                xor.next(&mut bits, i)?
            };
            each(i, ts, value);
        }
        Ok(())
    }
}

/// The byte-aligned fields in front of a chunk's bit streams.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn varint(&mut self) -> Result<u64, CorruptChunk> {
        let (v, used) = get_varint(self.0).ok_or(CorruptChunk("bad varint"))?;
        self.0 = &self.0[used..];
        Ok(v)
    }

    fn byte(&mut self) -> Result<u8, CorruptChunk> {
        let (&b, rest) = self.0.split_first().ok_or(CorruptChunk("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn exponent(&mut self) -> Result<u8, CorruptChunk> {
        let e = self.byte()?;
        if e as usize > MAX_EXPONENT {
            return Err(CorruptChunk("bad exponent"));
        }
        Ok(e)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CorruptChunk> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.0.len()).ok_or(CorruptChunk("truncated"))?;
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
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
#[derive(Default)]
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

    /// The value form of a packed chunk (`VALUES_XOR` or `VALUES_DECIMAL`), and for decimals the
    /// order and divisor.
    fn value_form(data: &[u8]) -> (u8, u8, u64) {
        assert_eq!(data[0], KIND_PACKED);
        let mut bytes = Bytes(&data[1..]);
        bytes.varint().unwrap();
        bytes.varint().unwrap();
        bytes.varint().unwrap();
        bytes.byte().unwrap();
        let times = bytes.varint().unwrap();
        bytes.take(times).unwrap();
        match bytes.byte().unwrap() {
            VALUES_XOR => (VALUES_XOR, 0, 0),
            form => {
                bytes.exponent().unwrap();
                let order = bytes.byte().unwrap();
                (form, order, bytes.varint().unwrap())
            }
        }
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
        // Deltas in steps of 0.05: divided by 5 hundredths, 13 values in 4 bits; the jitter's
        // deviations from the 10 s step in 4 bits more. Gorilla's buckets took 18 bits.
        assert_eq!(value_form(&data), (VALUES_DECIMAL, 1, 5));
        assert!(per_sample < 1.05, "{per_sample} bytes per sample");
        let (exponent, mantissas) = decimal_form(&points).unwrap();
        assert!(data.len() * 2 < encode_with(&points, KIND_DEC_DELTA, exponent, &mantissas).len());
        // The same walk with 15 digits after the point leaves XOR the best choice.
        let noisy: Vec<(i64, f64)> = points.iter().map(|&(t, v)| (t, v + 1e-3 / 3.0)).collect();
        assert!(same(&decode(&encode(&noisy)).unwrap(), &noisy));
        assert_eq!(value_form(&encode(&noisy)).0, VALUES_XOR);
        // A constant on an exact clock: its header and two codes, nothing per sample.
        let flat = series(1_700_000_000_000, 10_000, std::iter::repeat_n(1.0, 720));
        assert!(encode(&flat).len() < 32, "{}", encode(&flat).len());
        assert!(same(&decode(&encode(&flat)).unwrap(), &flat));
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
        assert_eq!(value_form(&data).0, VALUES_DECIMAL);
        assert!(data.len() < encode_with(&points, KIND_XOR, 0, &[]).len(), "{}", data.len());
        assert!(same(&decode(&data).unwrap(), &points));
    }

    #[test]
    fn each_column_takes_the_code_its_values_need() {
        // Unchanged: the value once, nothing per value (Gorilla's buckets took a bit each).
        assert_eq!(choose_code(&[0; 500]), (IntCode::Constant(0), 1));
        assert_eq!(choose_code(&[-7; 3]), (IntCode::Constant(-7), 9));
        // Uniform in 0..200 000 (a counter's increments): 18 bits above the smallest.
        let uniform: Vec<i64> = (0..720).map(|i| 1_000 + (i * 7_919 * 31) % 200_000).collect();
        assert!(matches!(choose_code(&uniform).0, IntCode::Patched { base: 1_000, width: 18 }));
        // Mostly unchanged, now and then 1–256 pages: a zero flag, then a byte.
        let rare: Vec<i64> = (0..720).map(|i| if i % 20 == 0 { 1 + i % 256 } else { 0 }).collect();
        assert!(matches!(choose_code(&rare).0, IntCode::ZeroFlagged { base: 1, width: 8 }));
        // A clock's jitter with a gap: 4 bits, the gap escapes to 64.
        let mut jitter: Vec<i64> = (0..720).map(|i| (i * 5) % 13 - 6).collect();
        jitter[300] = 3_600_000;
        assert!(matches!(choose_code(&jitter).0, IntCode::Patched { base: -6, width: 4 }));
        for values in [&uniform, &rare, &jitter, &vec![0; 500], &vec![i64::MIN; 4], &vec![i64::MAX; 1]] {
            let mut bits = BitWriter::default();
            put_ints(&mut bits, values, choose_code(values).0);
            let data = bits.finish();
            let mut reader = BitReader { data: &data, pos: 0 };
            let code = IntCode::read(&mut reader).unwrap();
            let back: Vec<i64> = values.iter().map(|_| code.next(&mut reader).unwrap()).collect();
            assert_eq!(&back, values);
        }
    }

    #[test]
    fn a_jittered_clock_and_a_gauge_in_pages_take_a_byte_or_less() {
        // An agent's clock: 10 s with 0–6 ms of jitter, and a gap of an hour.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut bytes = 8e9;
        let points: Vec<(i64, f64)> = (0..720i64)
            .map(|i| {
                bytes += ((next() % 65) as f64 - 32.0) * 4096.0;
                (1_700_000_000_000 + i * 10_000 + if i >= 400 { 3_600_000 } else { 0 } + (next() % 7) as i64, bytes)
            })
            .collect();
        let data = encode(&points);
        assert!(same(&decode(&data).unwrap(), &points));
        assert_eq!(value_form(&data), (VALUES_DECIMAL, 1, 4096));
        // 4 bits of time (the gap breaks the grid: steps), 7 of pages.
        assert_eq!(data[time_form_at(&data)], TIMES_STEPS);
        assert!(data.len() < 720 * 11 / 8 + 48, "{} bytes", data.len());
        // Without the gap, offsets from the grid: 3 bits of time.
        let on_grid: Vec<(i64, f64)> =
            points.iter().enumerate().map(|(i, &(ts, v))| (if i >= 400 { ts - 3_600_000 } else { ts }, v)).collect();
        let data = encode(&on_grid);
        assert!(same(&decode(&data).unwrap(), &on_grid));
        assert_eq!(data[time_form_at(&data)], TIMES_GRID);
        assert!(data.len() < 720 * 10 / 8 + 48, "{} bytes", data.len());
    }

    /// Where a packed chunk's time form is.
    fn time_form_at(data: &[u8]) -> usize {
        let mut bytes = Bytes(&data[1..]);
        for _ in 0..3 {
            bytes.varint().unwrap();
        }
        data.len() - bytes.0.len()
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        // A chunk of each value form, and of each kind written before, cut short anywhere: the
        // last byte holds bits of the last point, so every cut is missing some (the reader looks
        // 64 bits ahead and must not take the zeros past the end for data).
        let sqrt = series(0, 1000, (0..100).map(|i| f64::from(i).sqrt()));
        let decimals = series(0, 1000, (0..100).map(|i| f64::from(i * i % 17) / 100.0));
        let pages = series(0, 1000, (0..100).map(|i| f64::from(i) * 4096.0));
        let flat = series(0, 1000, std::iter::repeat_n(2.5, 100));
        let chunks =
            [encode(&sqrt), encode(&decimals), encode(&pages), encode(&pages[..1]), encode(&pages[..2]), encode(&flat)];
        let forms: Vec<u8> = chunks[..3].iter().map(|c| value_form(c).0).collect();
        assert_eq!(forms, [VALUES_XOR, VALUES_DECIMAL, VALUES_DECIMAL]);
        let (e, decimal_mantissas) = decimal_form(&decimals).unwrap();
        let (_, page_mantissas) = decimal_form(&pages).unwrap();
        let legacy = [
            encode_with(&sqrt, KIND_XOR, 0, &[]),
            encode_with(&decimals, KIND_DEC_DELTA, e, &decimal_mantissas),
            encode_with(&pages, KIND_DEC_DOD, 0, &page_mantissas),
        ];
        for data in chunks.iter().chain(&legacy) {
            assert!(decode(data).unwrap().len() <= 100);
            for cut in 0..data.len() {
                assert!(decode(&data[..cut]).is_err(), "a chunk cut to {cut} of {} bytes decoded", data.len());
            }
        }
        assert!(same(&decode(&legacy[0]).unwrap(), &sqrt));
        assert!(same(&decode(&legacy[1]).unwrap(), &decimals));
        assert!(same(&decode(&legacy[2]).unwrap(), &pages));
        let rollup = encode_summaries(&[(0, Summary::of(0, 1.5)), (60_000, Summary::of(60_001, 2.5))]);
        for cut in 0..rollup.len() {
            assert!(decode_summaries(&rollup[..cut]).is_err());
        }
        // Constant columns take no bits per point, so only a bound stops a forged count.
        let flat_chunk = encode(&flat);
        assert_eq!(flat_chunk[1], 100, "a one-byte count");
        let mut forged = vec![flat_chunk[0]];
        put_varint(&mut forged, CONSTANT_POINTS_BOUND + 1);
        forged.extend_from_slice(&flat_chunk[2..]);
        assert_eq!(decode(&forged), Err(CorruptChunk("count past the data")));
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
            prop_assert!(same(&decode(&encode_with(&points, KIND_XOR, 0, &[])).unwrap(), &points));
            let as_ints: Vec<(i64, f64)> = points.iter().zip(&ints).map(|(p, &v)| (p.0, v as f64)).collect();
            prop_assert!(same(&decode(&encode(&as_ints)).unwrap(), &as_ints));
            let mantissas: Vec<i64> = ints[..as_ints.len()].to_vec();
            for kind in [KIND_DEC_DELTA, KIND_DEC_DOD] {
                prop_assert!(same(&decode(&encode_with(&as_ints, kind, 0, &mantissas)).unwrap(), &as_ints));
            }
        }

        #[test]
        fn any_integer_column_round_trips(
            small in proptest::collection::vec(-40i64..40, 0..300),
            outliers in proptest::collection::vec((0usize..300, any::<i64>()), 0..12),
            zeros in proptest::collection::vec(0usize..300, 0..250),
        ) {
            let mut values = small;
            for (at, v) in outliers.into_iter().chain(zeros.into_iter().map(|at| (at, 0))) {
                if let Some(slot) = values.get_mut(at) {
                    *slot = v;
                }
            }
            let mut bits = BitWriter::default();
            put_ints(&mut bits, &values, choose_code(&values).0);
            let data = bits.finish();
            let mut reader = BitReader { data: &data, pos: 0 };
            let code = IntCode::read(&mut reader).unwrap();
            let back: Vec<i64> = values.iter().map(|_| code.next(&mut reader).unwrap()).collect();
            prop_assert_eq!(back, values);
        }

        #[test]
        fn any_bytes_decode_to_an_answer_or_an_error(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data);
            let _ = decode_summaries(&data);
        }
    }
}

//! PromQL evaluation over a tenant's series (issue 18, item 2): the subset dashboards and alert
//! queries use, evaluated the way Prometheus evaluates it, and a clear error for the rest (never a
//! wrong answer). Pure: `needs` says which series windows an expression reads, the HTTP layer
//! fetches them, `instant`/`range` evaluate over what was fetched.
//!
//! Served: number literals, series selectors (all four matchers, `offset`), with Prometheus' 5
//! minute lookback; range selectors as function arguments; `rate`, `irate`, `increase`, `delta`
//! (Prometheus' extrapolation), `avg|min|max|sum|count|last_over_time`; `abs`, `ceil`, `floor`,
//! `sqrt`, `exp`, `ln`; `sum|avg|min|max|count` with `by`/`without`; unary minus; arithmetic
//! (`+ - * / % ^ atan2`) and comparisons (filtering, or 0/1 with `bool`) between scalars and
//! vectors, and between two vectors with Prometheus' vector matching: one-to-one on all labels
//! but the name, `on(…)`/`ignoring(…)`, `group_left(…)`/`group_right(…)` with the labels they
//! copy from the "one" side, and the set operators `and`, `or`, `unless`; Prometheus' errors
//! (`execution`) for many-to-many matches and duplicate label sets.
//! Not served (an error naming it): subqueries, `@`, `fill()` modifiers, the other functions and
//! aggregations.
//!
//! Anchors: Prometheus' `promql/engine.go` and `promql/functions.go` (extrapolatedRate,
//! instantValue, the aggregations, VectorBinop, VectorAnd/Or/Unless, resultMetric), whose
//! results the tests compare against a real Prometheus. `atan2` drops the metric name as every
//! arithmetic operator does (Prometheus since 2.47; Debian's 2.42 still kept it).

use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};

use crate::domain::Labels;
use crate::domain::promql::{LOOKBACK_MS, Selector};

/// A series fetched for a selector: Prometheus labels (with `__name__`), points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A selector the expression reads and the window of samples it needs.
#[derive(Debug, Clone)]
pub struct Needed {
    /// The selector's text (with its offset): the key of its series in `Data`.
    pub key: String,
    pub selector: Selector,
    pub from: i64,
    pub to: i64,
}

/// The fetched series of each selector, by `Needed::key`.
pub type Data = HashMap<String, Vec<Series>>;

/// Why an expression cannot be answered: Prometheus' `errorType` and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    /// `bad_data` (the query is not valid or not served) or `execution`.
    pub kind: &'static str,
    pub message: String,
}

fn unsupported(what: impl std::fmt::Display) -> EvalError {
    EvalError { kind: "bad_data", message: format!("{what} is not supported by microdash's PromQL (yet)") }
}

/// An instant result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// Parses a query; a syntax error is `bad_data` with the parser's message.
pub fn parse(query: &str) -> Result<Expr, EvalError> {
    parser::parse(query).map_err(|e| EvalError { kind: "bad_data", message: format!("invalid PromQL: {e}") })
}

/// The longest range or offset taken: 10 000 years, so times and windows never overflow.
const MAX_DURATION_MS: u128 = 10_000 * 365 * 86_400_000;

/// A range or offset in ms, refused past `MAX_DURATION_MS`.
fn duration_ms(d: &std::time::Duration, what: &str) -> Result<i64, EvalError> {
    match d.as_millis() {
        ms if ms <= MAX_DURATION_MS => Ok(ms as i64),
        _ => Err(EvalError { kind: "bad_data", message: format!("the {what} is longer than 10000 years") }),
    }
}

fn offset_ms(vs: &VectorSelector) -> Result<i64, EvalError> {
    if vs.at.is_some() {
        return Err(unsupported("the @ modifier"));
    }
    Ok(match &vs.offset {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d, "offset")?,
        Some(Offset::Neg(d)) => -duration_ms(d, "offset")?,
    })
}

/// The windows an expression evaluated from `start` to `end` reads, merged per selector; an
/// error when it uses what is not served.
pub fn needs(expr: &Expr, start: i64, end: i64) -> Result<Vec<Needed>, EvalError> {
    let mut out: BTreeMap<String, Needed> = BTreeMap::new();
    collect(expr, start, end, &mut out)?;
    Ok(out.into_values().collect())
}

fn add_need(
    vs: &VectorSelector,
    range_ms: i64,
    start: i64,
    end: i64,
    out: &mut BTreeMap<String, Needed>,
) -> Result<(), EvalError> {
    let offset = offset_ms(vs)?;
    let key = vs.to_string();
    let (from, to) = (start - offset - range_ms, end - offset);
    match out.get_mut(&key) {
        Some(need) => {
            need.from = need.from.min(from);
            need.to = need.to.max(to);
        }
        None => {
            let selector = Selector::from_vector_selector(vs.clone());
            out.insert(key.clone(), Needed { key, selector, from, to });
        }
    }
    Ok(())
}

fn collect(expr: &Expr, start: i64, end: i64, out: &mut BTreeMap<String, Needed>) -> Result<(), EvalError> {
    match expr {
        Expr::NumberLiteral(_) => Ok(()),
        Expr::Paren(p) => collect(&p.expr, start, end, out),
        Expr::Unary(u) => collect(&u.expr, start, end, out),
        Expr::VectorSelector(vs) => add_need(vs, LOOKBACK_MS, start, end, out),
        Expr::MatrixSelector(_) => Err(EvalError {
            kind: "bad_data",
            message:
                "a range selector (x[5m]) is only served inside a function such as rate(); query_range answers ranges"
                    .into(),
        }),
        Expr::Call(call) => {
            let kind = function(call.func.name)?;
            match (kind, call.args.args.first().map(|a| a.as_ref())) {
                (Function::Range(_), Some(Expr::MatrixSelector(ms))) => {
                    add_need(&ms.vs, duration_ms(&ms.range, "range")?, start, end, out)
                }
                (Function::Instant(_), Some(arg)) => collect(arg, start, end, out),
                _ => Err(EvalError { kind: "bad_data", message: format!("{}: unexpected arguments", call.func.name) }),
            }
        }
        Expr::Aggregate(agg) => {
            aggregation(agg)?;
            collect(&agg.expr, start, end, out)
        }
        Expr::Binary(b) => {
            binary_op(b)?;
            collect(&b.lhs, start, end, out)?;
            collect(&b.rhs, start, end, out)
        }
        Expr::StringLiteral(_) => Err(unsupported("a string result")),
        Expr::Subquery(_) => Err(unsupported("a subquery")),
        Expr::Extension(_) => Err(unsupported("this expression")),
    }
}

#[derive(Clone, Copy)]
enum RangeFn {
    Rate,
    Irate,
    Increase,
    Delta,
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
}

#[derive(Clone, Copy)]
enum Function {
    Range(RangeFn),
    Instant(fn(f64) -> f64),
}

fn function(name: &str) -> Result<Function, EvalError> {
    use RangeFn::*;
    Ok(match name {
        "rate" => Function::Range(Rate),
        "irate" => Function::Range(Irate),
        "increase" => Function::Range(Increase),
        "delta" => Function::Range(Delta),
        "avg_over_time" => Function::Range(Avg),
        "min_over_time" => Function::Range(Min),
        "max_over_time" => Function::Range(Max),
        "sum_over_time" => Function::Range(Sum),
        "count_over_time" => Function::Range(Count),
        "last_over_time" => Function::Range(Last),
        "abs" => Function::Instant(f64::abs),
        "ceil" => Function::Instant(f64::ceil),
        "floor" => Function::Instant(f64::floor),
        "sqrt" => Function::Instant(f64::sqrt),
        "exp" => Function::Instant(f64::exp),
        "ln" => Function::Instant(f64::ln),
        other => return Err(unsupported(format!("the function {other}()"))),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

fn aggregation(agg: &AggregateExpr) -> Result<Agg, EvalError> {
    if agg.param.is_some() {
        return Err(unsupported(format!("the aggregation {}", agg.op)));
    }
    Ok(match agg.op.to_string().as_str() {
        "sum" => Agg::Sum,
        "avg" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "count" => Agg::Count,
        other => return Err(unsupported(format!("the aggregation {other}"))),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Op {
    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Prometheus' `vectorElemBinop`: the value, and for comparisons whether it holds.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
        }
    }
}

/// The set operators, which keep samples of one side instead of computing values.
#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    And,
    Or,
    Unless,
}

#[derive(Clone, Copy, PartialEq)]
enum BinOp {
    Elem(Op),
    Set(SetOp),
}

fn binary_op(b: &BinaryExpr) -> Result<BinOp, EvalError> {
    if b.modifier.as_ref().is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some()) {
        return Err(unsupported("fill(), fill_left() and fill_right()"));
    }
    Ok(BinOp::Elem(match b.op.to_string().as_str() {
        "+" => Op::Add,
        "-" => Op::Sub,
        "*" => Op::Mul,
        "/" => Op::Div,
        "%" => Op::Mod,
        "^" => Op::Pow,
        "atan2" => Op::Atan2,
        "==" => Op::Eq,
        "!=" => Op::Ne,
        ">" => Op::Gt,
        "<" => Op::Lt,
        ">=" => Op::Ge,
        "<=" => Op::Le,
        "and" => return Ok(BinOp::Set(SetOp::And)),
        "or" => return Ok(BinOp::Set(SetOp::Or)),
        "unless" => return Ok(BinOp::Set(SetOp::Unless)),
        other => return Err(unsupported(format!("the operator {other}"))),
    }))
}

fn drop_name(mut labels: Labels) -> Labels {
    labels.remove(METRIC_NAME);
    labels
}

/// Evaluates the expression at `t` (Unix ms) over `data`.
pub fn instant(expr: &Expr, data: &Data, t: i64) -> Result<Value, EvalError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
        Expr::Paren(p) => instant(&p.expr, data, t),
        Expr::Unary(u) => Ok(match instant(&u.expr, data, t)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(v) => Value::Vector(distinct(v.into_iter().map(|(l, v)| (drop_name(l), -v)).collect())?),
        }),
        Expr::VectorSelector(vs) => {
            let at = t - offset_ms(vs)?;
            let series = data.get(&vs.to_string()).map(Vec::as_slice).unwrap_or_default();
            Ok(Value::Vector(
                series
                    .iter()
                    .filter_map(|s| window(&s.points, at - LOOKBACK_MS, at).last().map(|p| (s.labels.clone(), p.1)))
                    .collect(),
            ))
        }
        Expr::Call(call) => eval_call(call, data, t),
        Expr::Aggregate(agg) => eval_aggregate(agg, data, t),
        Expr::Binary(b) => eval_binary(b, data, t),
        other => Err(unsupported(format!("{other}"))),
    }
}

/// The points in `(from, to]`.
fn window(points: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let start = points.partition_point(|p| p.0 <= from);
    let end = points.partition_point(|p| p.0 <= to);
    &points[start..end.max(start)]
}

fn eval_call(call: &Call, data: &Data, t: i64) -> Result<Value, EvalError> {
    match (function(call.func.name)?, call.args.args.first().map(|a| a.as_ref())) {
        (Function::Instant(f), Some(arg)) => match instant(arg, data, t)? {
            Value::Vector(v) => {
                Ok(Value::Vector(distinct(v.into_iter().map(|(l, v)| (drop_name(l), f(v))).collect())?))
            }
            Value::Scalar(_) => {
                Err(EvalError { kind: "bad_data", message: format!("{} takes an instant vector", call.func.name) })
            }
        },
        (Function::Range(f), Some(Expr::MatrixSelector(ms))) => {
            let range = duration_ms(&ms.range, "range")?;
            let end = t - offset_ms(&ms.vs)?;
            let start = end - range;
            let series = data.get(&ms.vs.to_string()).map(Vec::as_slice).unwrap_or_default();
            let mut out = Vec::new();
            for s in series {
                let points = window(&s.points, start, end);
                if let Some(v) = range_function(f, points, start, end, range) {
                    let labels =
                        if matches!(f, RangeFn::Last) { s.labels.clone() } else { drop_name(s.labels.clone()) };
                    out.push((labels, v));
                }
            }
            Ok(Value::Vector(distinct(out)?))
        }
        _ => Err(EvalError { kind: "bad_data", message: format!("{}: unexpected arguments", call.func.name) }),
    }
}

fn range_function(f: RangeFn, points: &[(i64, f64)], start: i64, end: i64, range: i64) -> Option<f64> {
    let values = || points.iter().map(|p| p.1);
    match f {
        RangeFn::Rate => extrapolated(points, start, end, range, true, true),
        RangeFn::Increase => extrapolated(points, start, end, range, true, false),
        RangeFn::Delta => extrapolated(points, start, end, range, false, false),
        RangeFn::Irate => {
            let [.., prev, last] = points else { return None };
            let dt = (last.0 - prev.0) as f64 / 1000.0;
            if dt == 0.0 {
                return None;
            }
            let change = if last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
            Some(change / dt)
        }
        _ if points.is_empty() => None,
        RangeFn::Count => Some(points.len() as f64),
        RangeFn::Sum => Some(values().sum()),
        RangeFn::Last => points.last().map(|p| p.1),
        RangeFn::Min => values().reduce(|a, b| if b < a || a.is_nan() { b } else { a }),
        RangeFn::Max => values().reduce(|a, b| if b > a || a.is_nan() { b } else { a }),
        RangeFn::Avg => {
            // Prometheus' incremental mean.
            let (mut mean, mut count) = (0.0, 0.0);
            for v in values() {
                count += 1.0;
                mean += v / count - mean / count;
            }
            Some(mean)
        }
    }
}

/// Prometheus' `extrapolatedRate`: the change over the window, counter resets added back for
/// counters, extrapolated to the window's edges when the samples come close to them.
fn extrapolated(points: &[(i64, f64)], start: i64, end: i64, range: i64, counter: bool, rate: bool) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < 2 {
        return None;
    }
    let mut result = last.1 - first.1;
    if counter {
        let mut previous = 0.0;
        for p in points {
            if p.1 < previous {
                result += previous;
            }
            previous = p.1;
        }
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average / 2.0 };
    interval += if to_end < threshold { to_end } else { average / 2.0 };
    result *= interval / sampled;
    if rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

fn eval_aggregate(agg: &AggregateExpr, data: &Data, t: i64) -> Result<Value, EvalError> {
    let op = aggregation(agg)?;
    let Value::Vector(input) = instant(&agg.expr, data, t)? else {
        return Err(EvalError { kind: "bad_data", message: format!("{} takes an instant vector", agg.op) });
    };
    // (labels of the group) -> (sum or min/max or mean, count)
    let mut groups: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
    for (labels, v) in input {
        let key: Labels = match &agg.modifier {
            None => Labels::new(),
            Some(LabelModifier::Include(keep)) => {
                labels.into_iter().filter(|(k, _)| keep.labels.iter().any(|l| l == k)).collect()
            }
            Some(LabelModifier::Exclude(drop)) => {
                labels.into_iter().filter(|(k, _)| k != METRIC_NAME && !drop.labels.iter().any(|l| l == k)).collect()
            }
        };
        match groups.get_mut(&key) {
            None => {
                groups.insert(key, (if op == Agg::Count { 1.0 } else { v }, 1.0));
            }
            Some((acc, count)) => {
                *count += 1.0;
                match op {
                    Agg::Sum => *acc += v,
                    Agg::Count => *acc += 1.0,
                    Agg::Min => {
                        if v < *acc || acc.is_nan() {
                            *acc = v
                        }
                    }
                    Agg::Max => {
                        if v > *acc || acc.is_nan() {
                            *acc = v
                        }
                    }
                    Agg::Avg => *acc += v / *count - *acc / *count,
                }
            }
        }
    }
    Ok(Value::Vector(groups.into_iter().map(|(labels, (v, _))| (labels, v)).collect()))
}

fn eval_binary(b: &BinaryExpr, data: &Data, t: i64) -> Result<Value, EvalError> {
    let op = binary_op(b)?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let (lhs, rhs) = (instant(&b.lhs, data, t)?, instant(&b.rhs, data, t)?);
    let vector = match (op, lhs, rhs) {
        (BinOp::Elem(op), Value::Scalar(l), Value::Scalar(r)) => {
            let (v, holds) = op.apply(l, r);
            return Ok(Value::Scalar(if !op.is_comparison() {
                v
            } else if holds {
                1.0
            } else {
                0.0
            }));
        }
        (BinOp::Elem(op), Value::Vector(vector), Value::Scalar(s)) => vector_scalar(op, vector, s, false, return_bool),
        (BinOp::Elem(op), Value::Scalar(s), Value::Vector(vector)) => vector_scalar(op, vector, s, true, return_bool),
        (op, Value::Vector(lhs), Value::Vector(rhs)) => {
            let matching = Matching::of(b);
            match op {
                BinOp::Elem(op) => vector_binop(op, lhs, rhs, &matching, return_bool)?,
                BinOp::Set(op) => vector_set(op, lhs, rhs, &matching),
            }
        }
        // The parser refuses set operators on scalars.
        (BinOp::Set(_), _, _) => {
            return Err(EvalError { kind: "bad_data", message: "set operators take two instant vectors".into() });
        }
    };
    distinct(vector).map(Value::Vector)
}

/// Prometheus' check after every operation and function: a vector holds each label set once
/// (`{__name__=~"a|b"} * 2` gives two series without a name).
fn distinct(vector: Vec<(Labels, f64)>) -> Result<Vec<(Labels, f64)>, EvalError> {
    let mut seen = HashSet::with_capacity(vector.len());
    if vector.iter().all(|(labels, _)| seen.insert(labels)) {
        Ok(vector)
    } else {
        Err(execution("vector cannot contain metrics with the same labelset"))
    }
}

fn execution(message: impl Into<String>) -> EvalError {
    EvalError { kind: "execution", message: message.into() }
}

/// How the samples of two vectors are paired (Prometheus' `VectorMatching`).
struct Matching<'a> {
    card: &'a VectorMatchCardinality,
    /// `on(…)` (only these labels) rather than `ignoring(…)` (all labels but these and the name).
    on: bool,
    labels: &'a [String],
}

const NO_LABELS: &[String] = &[];
const ONE_TO_ONE: &VectorMatchCardinality = &VectorMatchCardinality::OneToOne;

impl<'a> Matching<'a> {
    fn of(b: &'a BinaryExpr) -> Self {
        let modifier = b.modifier.as_ref();
        let card = modifier.map_or(ONE_TO_ONE, |m| &m.card);
        match modifier.and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(on)) => Matching { card, on: true, labels: &on.labels },
            Some(LabelModifier::Exclude(ignoring)) => Matching { card, on: false, labels: &ignoring.labels },
            None => Matching { card, on: false, labels: NO_LABELS },
        }
    }

    /// Whether a label takes part in matching (`signatureFunc`: the `on` labels, or all but
    /// the `ignoring` labels and the name).
    fn matches_on(&self, name: &str) -> bool {
        let listed = self.labels.iter().any(|l| l == name);
        if self.on { listed } else { !listed && name != METRIC_NAME }
    }

    /// The match group of a series; a label with an empty value is no label, as in Prometheus.
    fn signature<'l>(&self, labels: &'l Labels) -> Vec<(&'l str, &'l str)> {
        labels
            .iter()
            .filter(|(k, v)| !v.is_empty() && self.matches_on(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The extra labels `group_left(…)`/`group_right(…)` copy from the "one" side.
    fn include(&self) -> &'a [String] {
        self.card.labels().map_or(NO_LABELS, |l| l.labels.as_slice())
    }
}

/// Prometheus' `VectorBinop`: arithmetic or a comparison between the samples of two vectors
/// that match; one-to-one, or many-to-one (`group_left`) / one-to-many (`group_right`) where
/// the "one" side must have a single series per match group.
fn vector_binop(
    op: Op,
    lhs: Vec<(Labels, f64)>,
    rhs: Vec<(Labels, f64)>,
    matching: &Matching<'_>,
    return_bool: bool,
) -> Result<Vec<(Labels, f64)>, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    // The "many" side is walked, the "one" side looked up; one-to-one is many-to-one where
    // a match group may only be used once.
    let (mut many, mut one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    // In label order, as Prometheus reads a selector's series (the error names the first pair).
    many.sort_by(|a, b| a.0.cmp(&b.0));
    one.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: HashMap<Vec<(&str, &str)>, &(Labels, f64)> = HashMap::with_capacity(one.len());
    for sample in &one {
        if let Some(earlier) = groups.insert(matching.signature(&sample.0), sample) {
            let group: Labels =
                sample.0.iter().filter(|(k, _)| matching.matches_on(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            return Err(execution(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];\
                 many-to-many matching not allowed: matching labels must be unique on one side",
                label_string(&group),
                if one_to_many { "left" } else { "right" },
                label_string(&sample.0),
                label_string(&earlier.0),
            )));
        }
    }
    let include = matching.include();
    let mut matched: HashMap<Vec<(&str, &str)>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for (labels, v) in &many {
        let signature = matching.signature(labels);
        let Some((one_labels, one_v)) = groups.get(&signature) else { continue };
        let (l, r) = if one_to_many { (*one_v, *v) } else { (*v, *one_v) };
        let (mut value, holds) = op.apply(l, r);
        if return_bool {
            value = if holds { 1.0 } else { 0.0 };
        } else if !holds {
            continue;
        }
        // Prometheus' `resultMetric`: the "many" side's labels, the name dropped by arithmetic,
        // only the matching labels of a one-to-one match, the `group_x` labels of the "one" side.
        let mut metric = labels.clone();
        if !op.is_comparison() || return_bool {
            metric.remove(METRIC_NAME);
        }
        if matches!(matching.card, VectorMatchCardinality::OneToOne) {
            if matching.on {
                metric.retain(|k, _| matching.labels.contains(k));
            } else {
                metric.retain(|k, _| !matching.labels.contains(k));
            }
        }
        for name in include {
            match one_labels.get(name).filter(|v| !v.is_empty()) {
                Some(v) => metric.insert(name.clone(), v.clone()),
                None => metric.remove(name),
            };
        }
        let seen = matched.entry(signature).or_default();
        if matches!(matching.card, VectorMatchCardinality::OneToOne) {
            if !seen.is_empty() {
                return Err(execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else if seen.contains(&metric) {
            return Err(execution("multiple matches for labels: grouping labels must ensure unique matches"));
        }
        seen.insert(metric.clone());
        out.push((metric, value));
    }
    Ok(out)
}

/// Prometheus' `VectorAnd`, `VectorOr` and `VectorUnless`: samples of the left side that have
/// (`and`) or have not (`unless`) a match on the right; `or` adds to the left side the right
/// side's samples without a match on the left. Samples are kept as they are, name included.
fn vector_set(
    op: SetOp,
    lhs: Vec<(Labels, f64)>,
    rhs: Vec<(Labels, f64)>,
    matching: &Matching<'_>,
) -> Vec<(Labels, f64)> {
    fn groups<'l>(matching: &Matching<'_>, vector: &'l [(Labels, f64)]) -> HashSet<Vec<(&'l str, &'l str)>> {
        vector.iter().map(|(labels, _)| matching.signature(labels)).collect()
    }
    match op {
        SetOp::And | SetOp::Unless => {
            let right = groups(matching, &rhs);
            let keep = op == SetOp::And;
            lhs.into_iter().filter(|(labels, _)| right.contains(&matching.signature(labels)) == keep).collect()
        }
        SetOp::Or => {
            let left = groups(matching, &lhs);
            let added: Vec<_> =
                rhs.into_iter().filter(|(labels, _)| !left.contains(&matching.signature(labels))).collect();
            drop(left);
            let mut out = lhs;
            out.extend(added);
            out
        }
    }
}

/// A label set as Prometheus writes it in messages: `{code="500", host="a"}`.
fn label_string(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Go's `strconv.Quote` for what label values hold: `"`, `\` and control characters escaped.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prometheus' `VectorscalarBinop`: `swap` when the scalar is on the left. A comparison keeps
/// the vector's value (or gives 0/1 with `bool`) and its name; arithmetic drops the name.
fn vector_scalar(op: Op, vector: Vec<(Labels, f64)>, s: f64, swap: bool, return_bool: bool) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for (labels, v) in vector {
        let (l, r) = if swap { (s, v) } else { (v, s) };
        let (value, holds) = op.apply(l, r);
        if !op.is_comparison() {
            out.push((drop_name(labels), value));
        } else if return_bool {
            out.push((drop_name(labels), if holds { 1.0 } else { 0.0 }));
        } else if holds {
            out.push((labels, v));
        }
    }
    out
}

/// One series of a range result: its labels and a point per step where it had a value.
pub type RangeSeries = (Labels, Vec<(i64, f64)>);

/// Evaluates at every step from `start` to `end` (inclusive); a scalar expression gives one
/// series without labels, as Prometheus answers it.
pub fn range(expr: &Expr, data: &Data, start: i64, end: i64, step: i64) -> Result<Vec<RangeSeries>, EvalError> {
    let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut t = start;
    while t <= end {
        match instant(expr, data, t)? {
            Value::Scalar(v) => series.entry(Labels::new()).or_default().push((t, v)),
            Value::Vector(vector) => {
                for (labels, v) in vector {
                    series.entry(labels).or_default().push((t, v));
                }
            }
        }
        t += step;
    }
    Ok(series.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// `requests_total` of two hosts every 10 s from 0 to 600 s: a counter rising 1/s on a (with
    /// a reset at 300 s), 2/s on b; `temp` a gauge.
    fn data(expr: &Expr) -> Data {
        let mut data = Data::new();
        for need in needs(expr, 0, 600_000).unwrap() {
            let mut series = Vec::new();
            for (host, slope) in [("a", 1.0), ("b", 2.0)] {
                for name in ["requests_total", "temp"] {
                    let l = labels(&[("__name__", name), ("host", host)]);
                    if !need.selector.matches(&l) {
                        continue;
                    }
                    let points = (0..=60)
                        .map(|i| {
                            let ts = i * 10_000;
                            let v = match (name, host) {
                                ("temp", _) => 20.0 + (i % 7) as f64 * slope,
                                (_, "a") if ts >= 300_000 => (ts - 300_000) as f64 / 1000.0,
                                _ => ts as f64 / 1000.0 * slope,
                            };
                            (ts, v)
                        })
                        .collect();
                    series.push(Series { labels: l, points });
                }
            }
            data.insert(need.key, series);
        }
        data
    }

    fn at(query: &str, t: i64) -> Value {
        let expr = parse(query).unwrap();
        instant(&expr, &data(&expr), t).unwrap()
    }

    fn vector(query: &str, t: i64) -> Vec<(Labels, f64)> {
        match at(query, t) {
            Value::Vector(mut v) => {
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn a_selector_answers_the_latest_sample_within_the_lookback() {
        let v = vector(r#"temp{host="a"}"#, 125_000);
        assert_eq!(v, [(labels(&[("__name__", "temp"), ("host", "a")]), 20.0 + 5.0)]);
        // 5 minutes after the last sample nothing is left.
        assert!(vector("temp", 600_000 + LOOKBACK_MS).is_empty());
        assert_eq!(vector("temp offset 1m", 125_000)[0].1, 20.0 + 6.0, "at 65 s: sample 60 s, i = 6");
    }

    #[test]
    fn rate_and_increase_extrapolate_and_survive_counter_resets() {
        // b rises 2/s: exactly 2 whatever the extrapolation.
        let v = vector("rate(requests_total[1m])", 200_000);
        assert!((v[1].1 - 2.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v[1].0, labels(&[("host", "b")]), "rate drops the metric name");
        // a resets at 300 s and still rises 1/s.
        // b over (80 s, 200 s]: 220 in 110 s, the first sample 10 s after the start: to 120 s.
        let v = vector(r#"increase(requests_total{host="b"}[2m])"#, 200_000);
        assert!((v[0].1 - 240.0).abs() < 1e-9, "{v:?}");
        // a over (230 s, 350 s]: 240→290, reset, 0→50 is 100 in 110 s, extrapolated to 120 s.
        let v = vector(r#"increase(requests_total{host="a"}[2m])"#, 350_000);
        assert!((v[0].1 - 100.0 * 120.0 / 110.0).abs() < 1e-9, "{v:?}");
        let v = vector(r#"irate(requests_total{host="a"}[1m])"#, 305_000);
        assert_eq!(v[0].1, 0.0 / 10.0, "the reset sample (0) over 10 s");
        let v = vector(r#"delta(temp{host="a"}[30s])"#, 65_000);
        assert!(v[0].1.is_finite());
    }

    #[test]
    fn over_time_functions_and_aggregations() {
        let t = 65_000; // samples at 40, 50, 60 s inside (35, 65]
        assert_eq!(vector(r#"count_over_time(temp{host="a"}[30s])"#, t)[0].1, 3.0);
        assert_eq!(vector(r#"sum_over_time(temp{host="a"}[30s])"#, t)[0].1, 24.0 + 25.0 + 26.0);
        assert_eq!(vector(r#"max_over_time(temp{host="a"}[30s])"#, t)[0].1, 26.0);
        assert_eq!(vector(r#"min_over_time(temp{host="a"}[30s])"#, t)[0].1, 24.0);
        assert_eq!(vector(r#"avg_over_time(temp{host="a"}[30s])"#, t)[0].1, 25.0);
        let last = vector(r#"last_over_time(temp{host="a"}[30s])"#, t);
        assert_eq!(last[0].0.get("__name__").map(String::as_str), Some("temp"), "last_over_time keeps the name");
        assert_eq!(vector("sum(temp)", t), [(Labels::new(), 26.0 + 32.0)]);
        assert_eq!(vector("count(temp)", t), [(Labels::new(), 2.0)]);
        assert_eq!(vector("max by (host) (temp)", t)[1], (labels(&[("host", "b")]), 32.0));
        assert_eq!(vector("avg without (host) (temp)", t), [(Labels::new(), 29.0)]);
    }

    #[test]
    fn scalars_and_vectors_combine_as_in_prometheus() {
        let t = 65_000;
        assert_eq!(at("1 + 2 * 3", t), Value::Scalar(7.0));
        assert_eq!(at("2 > bool 1", t), Value::Scalar(1.0));
        let v = vector("temp * 2", t);
        assert_eq!(v[0], (labels(&[("host", "a")]), 52.0), "arithmetic drops the name");
        let v = vector("temp > 30", t);
        assert_eq!(v, [(labels(&[("__name__", "temp"), ("host", "b")]), 32.0)], "a filter keeps name and value");
        let v = vector("30 < temp", t);
        assert_eq!(
            v,
            [(labels(&[("__name__", "temp"), ("host", "b")]), 32.0)],
            "the vector's value, also on the right"
        );
        let v = vector("temp > bool 30", t);
        assert_eq!(v, [(labels(&[("host", "a")]), 0.0), (labels(&[("host", "b")]), 1.0)]);
        assert_eq!(vector("-temp", t)[0].1, -26.0);
        assert_eq!(vector("abs(-temp)", t)[0].1, 26.0);
    }

    #[test]
    fn a_range_query_evaluates_every_step() {
        let expr = parse("sum(rate(requests_total[1m]))").unwrap();
        let series = range(&expr, &data(&expr), 100_000, 200_000, 50_000).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].1.len(), 3);
        assert!(series[0].1.iter().all(|(_, v)| (v - 3.0).abs() < 1e-9), "{series:?}");
        let scalar = range(&parse("1").unwrap(), &Data::new(), 0, 20_000, 10_000).unwrap();
        assert_eq!(scalar, [(Labels::new(), vec![(0, 1.0), (10_000, 1.0), (20_000, 1.0)])]);
    }

    /// Evaluates at 0 over series that each have one sample at 0.
    fn eval_on(query: &str, series: &[(&[(&str, &str)], f64)]) -> Result<Value, EvalError> {
        let expr = parse(query).unwrap();
        let mut data = Data::new();
        for need in needs(&expr, 0, 0)? {
            let matching = series
                .iter()
                .map(|(l, v)| Series { labels: labels(l), points: vec![(0, *v)] })
                .filter(|s| need.selector.matches(&s.labels))
                .collect();
            data.insert(need.key, matching);
        }
        instant(&expr, &data, 0)
    }

    fn sorted(value: Result<Value, EvalError>) -> Vec<(Labels, f64)> {
        match value {
            Ok(Value::Vector(mut v)) => {
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
            other => panic!("{other:?}"),
        }
    }

    /// Filesystems of two hosts: bytes available and size per mountpoint, and the hosts' info
    /// with a label to copy (`os`).
    const FS: &[(&[(&str, &str)], f64)] = &[
        (&[("__name__", "avail"), ("host", "a"), ("mount", "/")], 25.0),
        (&[("__name__", "avail"), ("host", "a"), ("mount", "/data")], 75.0),
        (&[("__name__", "avail"), ("host", "b"), ("mount", "/")], 10.0),
        (&[("__name__", "size"), ("host", "a"), ("mount", "/")], 100.0),
        (&[("__name__", "size"), ("host", "a"), ("mount", "/data")], 100.0),
        (&[("__name__", "size"), ("host", "b"), ("mount", "/")], 40.0),
        (&[("__name__", "size"), ("host", "c"), ("mount", "/")], 40.0),
        (&[("__name__", "info"), ("host", "a"), ("os", "debian")], 1.0),
        (&[("__name__", "info"), ("host", "b"), ("os", "")], 1.0),
        (&[("__name__", "up"), ("host", "a"), ("job", "node")], 1.0),
        (&[("__name__", "up"), ("host", "b"), ("job", "node")], 0.0),
    ];

    #[test]
    fn two_vectors_match_one_to_one_on_all_labels_but_the_name() {
        let v = sorted(eval_on("100 * (1 - avail / size)", FS));
        assert_eq!(
            v,
            [
                (labels(&[("host", "a"), ("mount", "/")]), 75.0),
                (labels(&[("host", "a"), ("mount", "/data")]), 25.0),
                (labels(&[("host", "b"), ("mount", "/")]), 75.0),
            ],
            "host c has no avail: no result; arithmetic drops the name"
        );
        for (op, a_root) in [("+", 125.0), ("-", -75.0), ("*", 2500.0), ("%", 25.0), ("^", 25f64.powf(100.0))] {
            let v = sorted(eval_on(&format!("avail {op} size"), FS));
            assert_eq!(v[0], (labels(&[("host", "a"), ("mount", "/")]), a_root), "{op}");
        }
        let v = sorted(eval_on("avail atan2 size", FS));
        assert_eq!(v[0], (labels(&[("host", "a"), ("mount", "/")]), 25f64.atan2(100.0)));
        // A comparison filters and keeps the left side's name and value; with bool it gives 0/1.
        let v = sorted(eval_on("avail > 0.5 * size", FS));
        assert_eq!(v, [(labels(&[("__name__", "avail"), ("host", "a"), ("mount", "/data")]), 75.0)]);
        let v = sorted(eval_on("avail <= bool 0.5 * size", FS));
        assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [1.0, 0.0, 1.0]);
        assert!(v.iter().all(|s| !s.0.contains_key("__name__")), "bool drops the name: {v:?}");
        for (op, holds) in [("==", [false, true, false]), ("!=", [true, false, true]), ("<", [true, false, true])] {
            let v = sorted(eval_on(&format!("avail {op} bool (size - 25)"), FS));
            let want: Vec<f64> = holds.iter().map(|h| if *h { 1.0 } else { 0.0 }).collect();
            assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), want, "{op}");
        }
        assert_eq!(sorted(eval_on("avail >= size", FS)), []);
        assert_eq!(sorted(eval_on("avail + nothing", FS)), [], "an empty side matches nothing");
    }

    #[test]
    fn on_and_ignoring_choose_the_labels_that_match() {
        // on(host): the result keeps only host.
        let v = sorted(eval_on(r#"avail{mount="/"} / on(host) up"#, FS));
        assert_eq!(v, [(labels(&[("host", "a")]), 25.0), (labels(&[("host", "b")]), f64::INFINITY)]);
        // ignoring(mount): the result has every label but mount and the name.
        let v = sorted(eval_on(r#"size{mount="/"} - ignoring(mount) avail{mount="/data"}"#, FS));
        assert_eq!(v, [(labels(&[("host", "a")]), 25.0)]);
        // ignoring(job) between up and info: host matches; the name stays with a filter.
        let v = sorted(eval_on("up == ignoring(job, os) info", FS));
        assert_eq!(v, [(labels(&[("__name__", "up"), ("host", "a")]), 1.0)]);
        // on() matches everything with everything: one series on each side.
        let v = sorted(eval_on(r#"avail{host="b"} * on() size{host="c"}"#, FS));
        assert_eq!(v, [(Labels::new(), 400.0)]);
    }

    #[test]
    fn group_left_and_group_right_match_many_to_one_and_copy_labels_from_the_one_side() {
        let v = sorted(eval_on("avail * on(host) group_left(os) info", FS));
        assert_eq!(
            v,
            [
                (labels(&[("host", "a"), ("mount", "/"), ("os", "debian")]), 25.0),
                (labels(&[("host", "a"), ("mount", "/data"), ("os", "debian")]), 75.0),
                (labels(&[("host", "b"), ("mount", "/")]), 10.0),
            ],
            "the many side's labels, os copied (b's is empty: none)"
        );
        // group_right: the many side is on the right; the value of a filter is the left's.
        let v = sorted(eval_on("info == on(host) group_right(os) (avail / avail)", FS));
        assert_eq!(
            v,
            [
                (labels(&[("host", "a"), ("mount", "/"), ("os", "debian")]), 1.0),
                (labels(&[("host", "a"), ("mount", "/data"), ("os", "debian")]), 1.0),
                (labels(&[("host", "b"), ("mount", "/")]), 1.0),
            ]
        );
        let v = sorted(eval_on("up > bool on(host) group_right avail", FS));
        assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [0.0, 0.0, 0.0]);
        assert!(v.iter().all(|s| s.0.contains_key("mount") && !s.0.contains_key("__name__")), "{v:?}");
        // A copied label overrides the many side's.
        let series: &[(&[(&str, &str)], f64)] = &[
            (&[("__name__", "x"), ("host", "a"), ("os", "old")], 2.0),
            (&[("__name__", "info"), ("host", "a"), ("os", "new")], 3.0),
        ];
        let v = sorted(eval_on("x + on(host) group_left(os) info", series));
        assert_eq!(v, [(labels(&[("host", "a"), ("os", "new")]), 5.0)]);
    }

    #[test]
    fn and_or_unless_keep_samples_as_they_are() {
        let v = sorted(eval_on("avail and avail > 20", FS));
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| s.0["__name__"] == "avail"), "the left side, name kept: {v:?}");
        let v = sorted(eval_on("avail and on(host) (up == 1)", FS));
        assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), [25.0, 75.0], "host a's");
        let v = sorted(eval_on("avail unless on(host) (up == 1)", FS));
        assert_eq!(v, [(labels(&[("__name__", "avail"), ("host", "b"), ("mount", "/")]), 10.0)]);
        let v = sorted(eval_on("avail unless ignoring(mount) up", FS));
        assert_eq!(v.len(), 3, "ignoring(mount): job still differs, nothing matches");
        // or: the left side, and the right side's series whose group the left has not.
        let v = sorted(eval_on(r#"avail{mount="/"} or size"#, FS));
        let names: Vec<(&str, &str, &str)> =
            v.iter().map(|s| (s.0["__name__"].as_str(), s.0["host"].as_str(), s.0["mount"].as_str())).collect();
        assert_eq!(names, [("avail", "a", "/"), ("avail", "b", "/"), ("size", "a", "/data"), ("size", "c", "/")]);
        let v = sorted(eval_on("nothing or on(host) up", FS));
        assert_eq!(v.len(), 2);
        // Duplicates on either side are fine for set operators.
        assert_eq!(sorted(eval_on("avail and on() up", FS)).len(), 3);
    }

    #[test]
    fn ambiguous_matches_are_refused_with_prometheus_errors() {
        let err = eval_on("up + on(host) avail", FS).unwrap_err();
        assert_eq!(err.kind, "execution");
        assert_eq!(
            err.message,
            r#"found duplicate series for the match group {host="a"} on the right hand-side of the operation: [{__name__="avail", host="a", mount="/data"}, {__name__="avail", host="a", mount="/"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        );
        let err = eval_on("avail * on(host) group_right size", FS).unwrap_err();
        assert!(
            err.message.starts_with(r#"found duplicate series for the match group {host="a"} on the left hand-side"#),
            "{}",
            err.message
        );
        let err = eval_on("avail + on(host) up", FS).unwrap_err();
        assert_eq!(
            err,
            EvalError {
                kind: "execution",
                message: "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    .into()
            }
        );
        let err = eval_on("avail + ignoring(mount) group_left up", FS);
        assert_eq!(sorted(err), [], "job differs: no match, no error");
        let series: &[(&[(&str, &str)], f64)] = &[
            (&[("__name__", "x"), ("host", "a"), ("mount", "/")], 1.0),
            (&[("__name__", "y"), ("host", "a"), ("mount", "/")], 2.0),
            (&[("__name__", "info"), ("host", "a")], 3.0),
        ];
        let err = eval_on(r#"{__name__=~"x|y"} + on(host) group_left info"#, series).unwrap_err();
        assert_eq!(err.message, "multiple matches for labels: grouping labels must ensure unique matches");
        let err = eval_on(r#"{__name__=~"x|y"} * 2"#, series).unwrap_err();
        assert_eq!(err, execution("vector cannot contain metrics with the same labelset"));
        assert_eq!(sorted(eval_on(r#"{__name__=~"x|y"} > 0"#, series)).len(), 2, "a filter keeps the names");
        // What the parser refuses is bad_data.
        for query in ["up and 1", "up and on(host) group_left up", "up + on(host) group_left(host) up", "up + bool up"]
        {
            assert_eq!(parse(query).unwrap_err().kind, "bad_data", "{query}");
        }
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
    }

    #[test]
    fn vectors_match_at_every_step_of_a_range_query() {
        // temp of a and b every 10 s; at each step b - a is its own difference.
        let expr = parse(r#"temp - ignoring(host) group_left temp{host="a"}"#).unwrap();
        let series = range(&expr, &data(&expr), 60_000, 120_000, 20_000).unwrap();
        assert_eq!(series.len(), 2);
        for (labels, points) in &series {
            assert_eq!(points.len(), 4, "{labels:?}");
            for (t, v) in points {
                let i = (t / 10_000) % 7;
                let want = if labels["host"] == "a" { 0.0 } else { i as f64 * 2.0 - i as f64 };
                assert_eq!(*v, want, "{labels:?} at {t}");
            }
        }
        let expr = parse("requests_total + on() requests_total").unwrap();
        let err = range(&expr, &data(&expr), 0, 60_000, 10_000).unwrap_err();
        assert!(err.message.contains("many-to-many"), "{err:?}");
    }

    #[test]
    fn what_is_not_served_is_refused_by_name_never_answered_wrong() {
        for (query, says) in [
            ("temp + fill(0) temp", "fill"),
            ("histogram_quantile(0.9, temp)", "histogram_quantile"),
            ("topk(3, temp)", "topk"),
            ("rate(temp[5m])[10m:1m]", "subquery"),
            ("temp @ 100", "@"),
            ("temp[5m]", "range selector"),
            ("rate(temp[1000000000y])", "10000 years"),
            ("temp offset 1000000000y", "10000 years"),
            (r#""text""#, "string"),
        ] {
            let expr = match parse(query) {
                Ok(expr) => expr,
                Err(e) => panic!("{query}: {e:?}"),
            };
            let err = needs(&expr, 0, 1000).unwrap_err();
            assert!(err.message.contains(says), "{query}: {}", err.message);
            assert_eq!(err.kind, "bad_data");
        }
        assert_eq!(parse("sum(").unwrap_err().kind, "bad_data");
    }
}

#!/usr/bin/env python3
"""Train papertrader's bundled models offline and export them as plain ONNX.

Run from the repository root (see models/README.md):

    python -m venv ~/.cache/pt-onnx-venv
    ~/.cache/pt-onnx-venv/bin/pip install -r models/requirements.txt
    ~/.cache/pt-onnx-venv/bin/python models/train.py

It reads data/synthetic_ticks.csv and data/synthetic_sentiment.csv, builds the
features exactly as crates/papertrader-core/src/features.rs defines them (same warm-up, same TA-Lib
seeding), trains

* `trend`: logistic regression on price/volume/time features, with the
  standardization folded into the weights (normalization mode "folded");
* `trend_sentiment`: a small MLP (one ReLU hidden layer) on the same features
  plus smoothed sentiment, with the standardization applied by papertrader
  before the model (normalization mode "standardize", mean/std in the spec);

and writes, per model, `models/NAME.onnx`, `models/NAME.toml` (the spec) and
`models/NAME.reference.json` (inputs and onnxruntime outputs), plus the
feature fixture `tests/fixtures/features_reference.csv`.

Everything is deterministic: fixed seeds, full-batch gradient descent.
"""

import csv
import hashlib
import json
import math
import os
import sys
from collections import deque

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
TICKS = os.path.join(ROOT, "data", "synthetic_ticks.csv")
SENTIMENT = os.path.join(ROOT, "data", "synthetic_sentiment.csv")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "features_reference.csv")
FIXTURE_TICKS = 3000
SEED = 7
NANOS_PER_MILLI = 1_000_000
NANOS_PER_DAY = 86_400 * 1_000_000_000
# Label: does the price rise over the next HORIZON ticks of the same symbol?
HORIZON = 300

# ---------------------------------------------------------------------------
# Streaming indicators, mirroring crates/papertrader-core/src/indicators (TA-Lib conventions).


class Ema:
    """SMA-seeded EMA, alpha 2/(n+1); first value with the n-th input."""

    def __init__(self, n):
        self.n, self.alpha, self.seed, self.value = n, 2.0 / (n + 1.0), [], None

    def update(self, x):
        if self.value is not None:
            self.value = (x - self.value) * self.alpha + self.value
        else:
            self.seed.append(x)
            if len(self.seed) == self.n:
                self.value = math.fsum(self.seed) / self.n
        return self.value


class Rsi:
    """Wilder RSI; first value with the (n+1)-th price; 0 when flat."""

    def __init__(self, n):
        self.n, self.prev, self.seeded = n, None, 0
        self.gain = self.loss = 0.0
        self.ready = False

    def update(self, p):
        prev, self.prev = self.prev, p
        if prev is None:
            return None
        ch = p - prev
        gain, loss = (0.0, -ch) if ch < 0.0 else (ch, 0.0)
        n = float(self.n)
        if self.ready:
            self.gain = (self.gain * (n - 1.0) + gain) / n
            self.loss = (self.loss * (n - 1.0) + loss) / n
        else:
            self.gain += gain
            self.loss += loss
            self.seeded += 1
            if self.seeded < self.n:
                return None
            self.gain /= n
            self.loss /= n
            self.ready = True
        total = self.gain + self.loss
        return 0.0 if total == 0.0 else 100.0 * (self.gain / total)


class Macd:
    """TA-Lib MACD: both EMAs seeded at the slow-th value (fast from the last
    `fast` of those), signal an SMA-seeded EMA of the MACD line."""

    def __init__(self, fast, slow, signal):
        if slow < fast:
            fast, slow = slow, fast
        self.fast, self.slow = fast, slow
        self.kf, self.ks = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0)
        self.seen, self.fseed, self.sseed = 0, [], []
        self.emas = None
        self.signal = Ema(signal)

    def update(self, x):
        if self.emas is not None:
            f, s = self.emas
            f, s = (x - f) * self.kf + f, (x - s) * self.ks + s
        else:
            self.seen += 1
            self.sseed.append(x)
            if self.seen > self.slow - self.fast:
                self.fseed.append(x)
            if self.seen < self.slow:
                return None
            f = math.fsum(self.fseed) / self.fast
            s = math.fsum(self.sseed) / self.slow
        self.emas = (f, s)
        macd = f - s
        sig = self.signal.update(macd)
        if sig is None:
            return None
        return macd - sig


def window_mean_std(xs):
    """Mean and population sigma of a full window (exact sums, two-pass)."""
    n = len(xs)
    if all(x == xs[0] for x in xs):
        return xs[0], 0.0
    mean = math.fsum(xs) / n
    var = math.fsum((x - mean) ** 2 for x in xs) / n
    return mean, math.sqrt(max(var, 0.0))


class Window:
    def __init__(self, n):
        self.n, self.buf = n, deque(maxlen=n)

    def push(self, x):
        self.buf.append(x)
        return len(self.buf) == self.n


def fmt_num(x):
    """Format a parameter the way Rust's `{}` formats an f64 or usize."""
    if float(x) == int(x):
        return str(int(x))
    return repr(float(x))


# ---------------------------------------------------------------------------
# Features, mirroring crates/papertrader-core/src/features.rs. Each is (kind, params) and has a
# canonical name; values are None until warm.


def feature_name(f):
    k = f["kind"]
    if k == "return_n":
        return f"return_{f['n']}"
    if k == "rsi":
        return f"rsi_{f['period']}"
    if k == "macd_hist":
        return f"macd_hist_{f['fast']}_{f['slow']}_{f['signal']}"
    if k == "bb_percent_b":
        return f"bb_percent_b_{f['period']}_{fmt_num(f['k'])}"
    if k == "volume_zscore":
        return f"volume_zscore_{f['period']}"
    if k == "sentiment_ema":
        return f"sentiment_ema_{f['period']}"
    if k == "time_of_day":
        return f"time_of_day_{f['component']}"
    raise ValueError(k)


class Feature:
    def __init__(self, f):
        self.spec, self.kind = f, f["kind"]
        k = self.kind
        if k == "return_n":
            self.prices = deque(maxlen=f["n"] + 1)
        elif k == "rsi":
            self.ind = Rsi(f["period"])
        elif k == "macd_hist":
            self.ind = Macd(f["fast"], f["slow"], f["signal"])
        elif k in ("bb_percent_b", "volume_zscore"):
            self.win = Window(f["period"])
        elif k == "sentiment_ema":
            self.ind = Ema(f["period"])
        self.value = None

    def on_tick(self, ts, price, size):
        k, f = self.kind, self.spec
        if k == "return_n":
            self.prices.append(price)
            if len(self.prices) == f["n"] + 1:
                self.value = price / self.prices[0] - 1.0
        elif k == "rsi":
            self.value = self.ind.update(price)
        elif k == "macd_hist":
            h = self.ind.update(price)
            self.value = None if h is None else h / price
        elif k == "bb_percent_b":
            if self.win.push(price):
                mean, sd = window_mean_std(list(self.win.buf))
                off = f["k"] * sd
                upper, lower = mean + off, mean - off
                width = upper - lower
                self.value = (price - lower) / width if width > 0.0 else 0.5
        elif k == "volume_zscore":
            if self.win.push(size):
                mean, sd = window_mean_std(list(self.win.buf))
                self.value = (size - mean) / sd if sd > 0.0 else 0.0
        elif k == "time_of_day":
            frac = (ts % NANOS_PER_DAY) / NANOS_PER_DAY
            angle = frac * (2.0 * math.pi)
            self.value = math.sin(angle) if f["component"] == "sin" else math.cos(angle)

    def on_sentiment(self, ts, score):
        if self.kind == "sentiment_ema":
            self.value = self.ind.update(score)


def read_events(max_ticks=None):
    """Ticks (first `max_ticks` rows) and the sentiment readings up to the last
    of them, ordered by ts; ticks before sentiment at equal ts (stable sort of
    the tick file followed by the sentiment file, as csvdata::merge_by_ts)."""
    ticks, sents = [], []
    with open(TICKS, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if max_ticks is not None and i >= max_ticks:
                break
            ticks.append(("tick", int(row["ts"]) * NANOS_PER_MILLI, row["symbol"],
                          float(row["price"]), float(row["size"]), row["price"]))
    last_ts = ticks[-1][1]
    with open(SENTIMENT, newline="") as fh:
        for row in csv.DictReader(fh):
            ts = int(row["ts"]) * NANOS_PER_MILLI
            if max_ticks is None or ts <= last_ts:
                sents.append(("sentiment", ts, row["symbol"], float(row["score"])))
    events = ticks + sents
    events.sort(key=lambda e: e[1])  # stable
    return events


def compute_features(events, specs):
    """Per tick event: (event, {name: value or None}). One Feature object per
    distinct canonical name and symbol (deduplicated, as in Rust)."""
    names = []
    for f in specs:
        n = feature_name(f)
        if n not in names:
            names.append(n)
    by_name = {feature_name(f): f for f in specs}
    state = {}
    rows = []
    for ev in events:
        sym = ev[2]
        if sym not in state:
            state[sym] = {n: Feature(by_name[n]) for n in names}
        feats = state[sym]
        if ev[0] == "tick":
            for ft in feats.values():
                ft.on_tick(ev[1], ev[3], ev[4])
            rows.append((ev, {n: feats[n].value for n in names}))
        else:
            for ft in feats.values():
                ft.on_sentiment(ev[1], ev[3])
    return names, rows


# ---------------------------------------------------------------------------
# Models


PRICE_FEATURES = [
    {"kind": "return_n", "n": 5},
    {"kind": "return_n", "n": 20},
    {"kind": "return_n", "n": 100},
    {"kind": "rsi", "period": 14},
    {"kind": "macd_hist", "fast": 12, "slow": 26, "signal": 9},
    {"kind": "bb_percent_b", "period": 20, "k": 2.0},
    {"kind": "volume_zscore", "period": 50},
]
SENTIMENT_FEATURES = PRICE_FEATURES + [
    {"kind": "sentiment_ema", "period": 3},
    {"kind": "sentiment_ema", "period": 10},
]
# The fixture covers every feature kind. time_of_day is not used by the bundled
# models: the data is one session, so with a split by time it only extrapolates.
FIXTURE_FEATURES = SENTIMENT_FEATURES + [
    {"kind": "time_of_day", "component": "sin"},
    {"kind": "time_of_day", "component": "cos"},
]


def dataset(names, rows, specs):
    """Design matrix and labels: rows where every feature is warm and the
    label (price HORIZON ticks later of the same symbol) exists."""
    cols = [feature_name(f) for f in specs]
    by_sym = {}
    for i, (ev, _) in enumerate(rows):
        by_sym.setdefault(ev[2], []).append(i)
    X, y, ts = [], [], []
    for sym, idx in by_sym.items():
        for j, i in enumerate(idx[:-HORIZON]):
            ev, vals = rows[i]
            if any(vals[c] is None for c in cols):
                continue
            future = rows[idx[j + HORIZON]][0][3]
            X.append([vals[c] for c in cols])
            y.append(1.0 if future > ev[3] else 0.0)
            ts.append(ev[1])
    order = np.argsort(np.array(ts), kind="stable")
    return np.array(X)[order], np.array(y)[order]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def train_logistic(Xs, y, l2=1e-3, lr=0.5, steps=3000):
    w = np.zeros(Xs.shape[1])
    b = 0.0
    for _ in range(steps):
        p = sigmoid(Xs @ w + b)
        g = p - y
        w -= lr * (Xs.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w, b


def train_mlp(Xs, y, hidden=8, l2=1e-3, lr=0.3, steps=4000, seed=SEED):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, 1.0 / math.sqrt(Xs.shape[1]), (Xs.shape[1], hidden))
    b1 = np.zeros(hidden)
    W2 = rng.normal(0.0, 1.0 / math.sqrt(hidden), (hidden, 1))
    b2 = np.zeros(1)
    n = len(y)
    for _ in range(steps):
        h_pre = Xs @ W1 + b1
        h = np.maximum(h_pre, 0.0)
        p = sigmoid(h @ W2 + b2)[:, 0]
        g = (p - y)[:, None] / n
        gW2 = h.T @ g + l2 * W2
        gb2 = g.sum(0)
        gh = (g @ W2.T) * (h_pre > 0.0)
        gW1 = Xs.T @ gh + l2 * W1
        gb1 = gh.sum(0)
        W1 -= lr * gW1
        b1 -= lr * gb1
        W2 -= lr * gW2
        b2 -= lr * gb2
    return W1, b1, W2, b2


def accuracy(p, y):
    return float(((p > 0.5) == (y > 0.5)).mean())


def auc(p, y):
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y > 0.5
    npos, nneg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def f32(a):
    return np.asarray(a, dtype=np.float32)


def logistic_graph(name, w, b, n_features):
    W = numpy_helper.from_array(f32(w).reshape(n_features, 1), "W")
    B = numpy_helper.from_array(f32([b]), "B")
    nodes = [
        helper.make_node("Gemm", ["features", "W", "B"], ["logit"], name="gemm"),
        helper.make_node("Sigmoid", ["logit"], ["p_up"], name="sigmoid"),
    ]
    return helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("p_up", TensorProto.FLOAT, ["N", 1])],
        [W, B],
    )


def mlp_graph(name, W1, b1, W2, b2, n_features):
    inits = [
        numpy_helper.from_array(f32(W1), "W1"),
        numpy_helper.from_array(f32(b1), "B1"),
        numpy_helper.from_array(f32(W2), "W2"),
        numpy_helper.from_array(f32(b2), "B2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "W1"], ["h_mm"], name="matmul1"),
        helper.make_node("Add", ["h_mm", "B1"], ["h_pre"], name="add1"),
        helper.make_node("Relu", ["h_pre"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "W2"], ["o_mm"], name="matmul2"),
        helper.make_node("Add", ["o_mm", "B2"], ["logit"], name="add2"),
        helper.make_node("Sigmoid", ["logit"], ["p_up"], name="sigmoid"),
    ]
    return helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("p_up", TensorProto.FLOAT, ["N", 1])],
        inits,
    )


def save_model(graph, path):
    model = helper.make_model(
        graph,
        producer_name="papertrader-models-train",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def toml_value(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def write_spec(path, name, description, specs, norm_mode, mean, std, metrics):
    lines = [
        f"# Model spec for models/{name}.onnx, written by models/train.py; see models/README.md.",
        f"name = {toml_value(name)}",
        f"description = {toml_value(description)}",
        f"onnx = {toml_value(name + '.onnx')}",
        "",
        "[input]",
        'name = "features"',
        f'shape = ["N", {len(specs)}]',
        "",
        "[output]",
        'name = "p_up"',
        'shape = ["N", 1]',
        "# The probability that the price is higher HORIZON ticks later.",
        'semantics = "probability_up"',
        "",
        "[signal]",
        "# Buy when p_up rises above buy_above, sell when it falls below sell_below;",
        "# strength = 2 * p_up - 1.",
        "buy_above = 0.6",
        "sell_below = 0.4",
        "",
        "[normalization]",
    ]
    if norm_mode == "folded":
        lines += [
            '# The training standardization is folded into the weights: feed raw features.',
            '# mean/std are the training statistics, for reference only.',
            'mode = "folded"',
        ]
    else:
        lines += [
            '# papertrader feeds (x - mean) / std to the model.',
            'mode = "standardize"',
        ]
    lines += [f"mean = {toml_value([float(m) for m in mean])}",
              f"std = {toml_value([float(s) for s in std])}", ""]
    lines += ["[training]"]
    for k, v in metrics.items():
        lines.append(f"{k} = {toml_value(v)}")
    lines.append("")
    for f in specs:
        lines.append("[[features]]")
        for k, v in f.items():
            lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def write_reference(path, name, sha, raw, inputs, outputs):
    doc = {
        "model": name,
        "sha256": sha,
        "producer": f"onnxruntime {ort.__version__}",
        "features": [[float(x) for x in r] for r in raw],
        "inputs": [[float(x) for x in r] for r in f32(inputs)],
        "outputs": [[float(x) for x in r] for r in outputs],
    }
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")


def run_ort(path, inputs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(["p_up"], {"features": f32(inputs)})[0]


def fit_and_export(name, description, specs, kind, rows, names):
    X, y = dataset(names, rows, specs)
    split = int(len(y) * 0.7)
    Xtr, ytr, Xte, yte = X[:split], y[:split], X[split:], y[split:]
    mean = Xtr.mean(0)
    std = Xtr.std(0)
    std[std == 0.0] = 1.0
    Xs_tr, Xs_te = (Xtr - mean) / std, (Xte - mean) / std
    onnx_path = os.path.join(MODELS, name + ".onnx")
    if kind == "logistic":
        w, b = train_logistic(Xs_tr, ytr)
        p_te = sigmoid(Xs_te @ w + b)
        # Fold the standardization: w.(x - m)/s + b = (w/s).x + (b - sum(w m / s)).
        wf = w / std
        bf = b - float(np.sum(w * mean / std))
        sha = save_model(logistic_graph(name, wf, bf, len(specs)), onnx_path)
        norm = "folded"
        model_in = Xte
    else:
        W1, b1, W2, b2 = train_mlp(Xs_tr, ytr)
        p_te = sigmoid(np.maximum(Xs_te @ W1 + b1, 0.0) @ W2 + b2)[:, 0]
        sha = save_model(mlp_graph(name, W1, b1, W2, b2, len(specs)), onnx_path)
        norm = "standardize"
        model_in = Xs_te
    ort_out = run_ort(onnx_path, model_in)[:, 0]
    metrics = {
        "label": f"price higher {HORIZON} ticks later (same symbol)",
        "train_rows": int(len(ytr)),
        "test_rows": int(len(yte)),
        "test_accuracy": round(accuracy(ort_out, yte), 4),
        "test_auc": round(auc(ort_out, yte), 4),
        "test_base_rate": round(float(yte.mean()), 4),
        "sha256": sha,
    }
    # float64 training path vs the float32 graph in onnxruntime
    assert np.max(np.abs(ort_out - p_te)) < 1e-4, np.max(np.abs(ort_out - p_te))
    write_spec(os.path.join(MODELS, name + ".toml"), name, description, specs, norm,
               mean, std, metrics)
    # Reference rows: 64 rows spread over the test set.
    pick = np.linspace(0, len(yte) - 1, 64).astype(int)
    ref_in = model_in[pick]
    write_reference(os.path.join(MODELS, name + ".reference.json"), name, sha,
                    Xte[pick], ref_in, run_ort(onnx_path, ref_in))
    print(f"{name}: {metrics}")


def write_fixture(names, rows):
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["ts", "symbol", "price"] + names)
        for ev, vals in rows:
            w.writerow([ev[1], ev[2], ev[5]] +
                       ["" if vals[n] is None else repr(vals[n]) for n in names])


def main():
    np.random.seed(SEED)
    events = read_events()
    names, rows = compute_features(events, SENTIMENT_FEATURES)
    fit_and_export(
        "trend",
        "Logistic trend classifier on price and volume features.",
        PRICE_FEATURES, "logistic", rows, names)
    fit_and_export(
        "trend_sentiment",
        "MLP (8 ReLU units) on the trend features plus smoothed news sentiment.",
        SENTIMENT_FEATURES, "mlp", rows, names)
    fx_names, fx_rows = compute_features(read_events(FIXTURE_TICKS), FIXTURE_FEATURES)
    write_fixture(fx_names, fx_rows)
    print(f"fixture: {len(fx_rows)} ticks, {len(fx_names)} features -> {FIXTURE}")


if __name__ == "__main__":
    sys.exit(main())

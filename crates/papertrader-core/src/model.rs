//! ONNX models: the spec beside each model, loading and checking it with
//! tract, and scoring feature vectors.
//!
//! A model is two files: `models/NAME.onnx` (the graph) and `models/NAME.toml`
//! (its [`ModelSpec`]: input and output tensors, the ordered features,
//! normalization, what the output means and how it maps to a signal). The
//! format is documented in `models/README.md`.
//!
//! [`load`] reads the spec, hashes the `.onnx` file (sha256: the model
//! version), loads the graph with `tract-onnx`, checks the declared input and
//! output names and shapes against the spec, optimizes it and makes it
//! runnable. Every disagreement is a [`ModelError`] that names the file, what
//! disagrees and the fix. [`Models`] holds the models a configuration names,
//! each loaded once when the configuration loads; every strategy instance built
//! from it scores with the same plan. There is no process-wide cache.
//!
//! Scoring is `f64` features in, `f64` outputs out; the graph runs in `f32`.
//! [`Model::score`] scores one feature vector, [`Model::score_batch`] several
//! (one row per symbol) in one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::features::FeatureSpec;

/// A model that cannot be used: which file, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {file}: {problem}\n  fix: {fix}")]
pub struct ModelError {
    pub file: String,
    pub problem: String,
    pub fix: String,
}

impl ModelError {
    fn new(file: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ModelError {
            file: file.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// One dimension of a tensor shape: fixed (`9`) or symbolic (`"N"`, any batch size).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbol(String),
}

impl OutputSemantics {
    /// The name the spec uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputSemantics::ProbabilityUp => "probability_up",
        }
    }
}

impl NormalizationMode {
    /// The name the spec uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NormalizationMode::Folded => "folded (scaling is in the weights)",
            NormalizationMode::Standardize => "standardize ((x - mean) / std before the model)",
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => write!(f, "{s:?}"),
        }
    }
}

/// A shape as the spec writes it, e.g. `["N", 7]`.
pub fn shape_string(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The model's input tensor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Name of the graph input.
    pub name: String,
    /// `[batch, features]`: batch `1` or a symbol such as `"N"`; features = the
    /// number of `[[features]]`.
    pub shape: Vec<Dim>,
}

/// What the output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSemantics {
    /// One value per row in [0, 1]: the probability that the price goes up.
    /// Strength = 2 p - 1.
    ProbabilityUp,
}

/// The model's output tensor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    /// `[batch, 1]` for `probability_up`.
    pub shape: Vec<Dim>,
    pub semantics: OutputSemantics,
}

/// How the output becomes a signal.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    /// Buy when the output rises above this.
    pub buy_above: f64,
    /// Sell when the output falls below this.
    pub sell_below: f64,
}

/// Where the feature scaling lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizationMode {
    /// Folded into the weights: raw features go in (mean/std informational).
    Folded,
    /// papertrader feeds `(x - mean) / std` per feature.
    Standardize,
}

/// Feature normalization.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub mode: NormalizationMode,
    /// Training mean per feature (required by `standardize`).
    #[serde(default)]
    pub mean: Vec<f64>,
    /// Training standard deviation per feature (required by `standardize`).
    #[serde(default)]
    pub std: Vec<f64>,
}

/// `models/NAME.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model name; it names the model in signals and reports.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The ONNX file, relative to this spec file.
    pub onnx: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub signal: SignalSpec,
    pub normalization: Normalization,
    /// How the model was trained (informational: label, metrics, hash).
    #[serde(default)]
    pub training: BTreeMap<String, toml::Value>,
    /// The input features, in the order of the input tensor's last dimension.
    pub features: Vec<FeatureSpec>,
}

/// A loaded, checked, runnable model.
#[derive(Debug)]
pub struct Model {
    pub spec: ModelSpec,
    pub spec_path: PathBuf,
    pub onnx_path: PathBuf,
    /// sha256 of the `.onnx` file, hex: the model version.
    pub sha256: String,
    /// The graph's input shape as tract reads it, e.g. `N,9,F32`.
    pub input_fact: String,
    /// The graph's output shape as tract reads it.
    pub output_fact: String,
    /// The plan for any number of rows (the batch dim stays symbolic).
    plan: Arc<TypedSimplePlan>,
    /// The plan for exactly one row (batch dim fixed to 1), for per-event scoring.
    plan_one: Arc<TypedSimplePlan>,
}

pub use crate::domain::ModelInfo;

/// Read and check a model spec (without loading the graph).
///
/// # Errors
/// The file cannot be read or parsed, or its fields disagree with each other.
pub fn read_spec(path: &Path) -> Result<ModelSpec, ModelError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ModelError::new(
            &file,
            format!("cannot read the model spec: {e}"),
            "give the path of an existing models/NAME.toml, relative to the working directory",
        )
    })?;
    let de = toml::Deserializer::parse(&text).map_err(|e| {
        ModelError::new(
            &file,
            e.to_string().trim().to_string(),
            "correct the TOML syntax",
        )
    })?;
    let spec: ModelSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        ModelError::new(
            &file,
            format!("key `{key}`: {}", e.into_inner().message()),
            "see the spec format in models/README.md",
        )
    })?;
    check_spec(&spec, &file)?;
    Ok(spec)
}

fn check_spec(spec: &ModelSpec, file: &str) -> Result<(), ModelError> {
    let err = |problem: String, fix: &str| Err(ModelError::new(file, problem, fix));
    let n = spec.features.len();
    if n == 0 {
        return err(
            "lists no [[features]]".into(),
            "list the input features in input order",
        );
    }
    for f in &spec.features {
        if let Err(e) = f.check() {
            return err(format!("feature {e}"), "correct the feature's parameters");
        }
    }
    let shape = &spec.input.shape;
    if shape.len() != 2 || shape[1] != Dim::Fixed(n) {
        return err(
            format!(
                "input.shape is {} but the spec lists {n} features",
                shape_string(shape)
            ),
            &format!("use input.shape = [\"N\", {n}] (or [1, {n}]) with one [[features]] entry per input column"),
        );
    }
    let out = &spec.output.shape;
    if out.len() != 2 || out[1] != Dim::Fixed(1) {
        return err(
            format!(
                "output.shape is {}; semantics probability_up needs one value per row",
                shape_string(out)
            ),
            "use output.shape = [\"N\", 1]",
        );
    }
    let s = spec.signal;
    if !(0.0 <= s.sell_below && s.sell_below <= s.buy_above && s.buy_above <= 1.0) {
        return err(
            format!(
                "signal thresholds need 0 <= sell_below <= buy_above <= 1, got sell_below {} and buy_above {}",
                s.sell_below, s.buy_above
            ),
            "e.g. buy_above = 0.6, sell_below = 0.4",
        );
    }
    let norm = &spec.normalization;
    if norm.mode == NormalizationMode::Standardize {
        if norm.mean.len() != n || norm.std.len() != n {
            return err(
                format!(
                    "normalization standardize needs {n} means and stds, got {} and {}",
                    norm.mean.len(),
                    norm.std.len()
                ),
                "give one mean and one std per feature, in feature order",
            );
        }
        if norm
            .std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0) || norm.mean.iter().any(|m| !m.is_finite()))
        {
            return err(
                "normalization has a non-finite mean or a std that is not positive".into(),
                "use finite means and positive stds (a constant feature: std = 1)",
            );
        }
    }
    Ok(())
}

/// The dims of a fact as tract sees them: `Fixed` for concrete ones.
fn fact_dims(fact: &TypedFact) -> Vec<Dim> {
    fact.shape
        .iter()
        .map(|d| match d.to_i64() {
            Ok(v) => Dim::Fixed(v as usize),
            Err(_) => Dim::Symbol(d.to_string()),
        })
        .collect()
}

/// Does a declared graph dim satisfy the spec's? A spec symbol accepts any
/// graph symbol (a free batch size) or 1; a fixed dim must match exactly.
fn dim_ok(spec: &Dim, graph: &Dim) -> bool {
    match (spec, graph) {
        (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
        (Dim::Symbol(_), Dim::Symbol(_)) => true,
        (Dim::Symbol(_), Dim::Fixed(b)) => *b == 1,
        (Dim::Fixed(_), Dim::Symbol(_)) => false,
    }
}

fn shape_ok(spec: &[Dim], graph: &[Dim]) -> bool {
    spec.len() == graph.len() && spec.iter().zip(graph).all(|(s, g)| dim_ok(s, g))
}

/// A graph tract error, with the fix papertrader's models need.
fn tract_error(file: &str, what: &str, e: TractError) -> ModelError {
    ModelError::new(
        file,
        format!("{what}: {e:#}"),
        "export a plain ONNX graph (MatMul/Gemm, Add, Relu, Sigmoid; opset 13) as models/train.py does",
    )
}

/// The graph has one float32 input and one output, named and shaped as the
/// spec says; returns the input and output facts as text.
fn check_graph(
    typed: &TypedModel,
    spec: &ModelSpec,
    file: &str,
    spec_file: &str,
) -> Result<(String, String), ModelError> {
    let inputs = typed
        .input_outlets()
        .map_err(|e| tract_error(file, "inputs", e))?;
    let outputs = typed
        .output_outlets()
        .map_err(|e| tract_error(file, "outputs", e))?;
    if inputs.len() != 1 || outputs.len() != 1 {
        return Err(ModelError::new(
            file,
            format!(
                "the graph has {} inputs and {} outputs; papertrader feeds one feature tensor and reads one output",
                inputs.len(),
                outputs.len()
            ),
            "export a graph with a single input and a single output",
        ));
    }
    let in_name = typed.node(inputs[0].node).name.clone();
    if in_name != spec.input.name {
        return Err(ModelError::new(
            file,
            format!(
                "the graph's input is named {in_name:?} but {spec_file} says input.name = {:?}",
                spec.input.name
            ),
            format!("set input.name = {in_name:?} in {spec_file}, or rename the graph input"),
        ));
    }
    let out_label = typed
        .outlet_label(outputs[0])
        .map(str::to_string)
        .unwrap_or_else(|| typed.node(outputs[0].node).name.clone());
    if out_label != spec.output.name {
        return Err(ModelError::new(
            file,
            format!(
                "the graph's output is named {out_label:?} but {spec_file} says output.name = {:?}",
                spec.output.name
            ),
            format!("set output.name = {out_label:?} in {spec_file}, or rename the graph output"),
        ));
    }
    let in_fact = typed
        .input_fact(0)
        .map_err(|e| tract_error(file, "input", e))?;
    let out_fact = typed
        .output_fact(0)
        .map_err(|e| tract_error(file, "output", e))?;
    if in_fact.datum_type != f32::datum_type() {
        return Err(ModelError::new(
            file,
            format!("the graph's input is {:?}, not float32", in_fact.datum_type),
            "export the input as TensorProto.FLOAT",
        ));
    }
    let in_dims = fact_dims(in_fact);
    let out_dims = fact_dims(out_fact);
    if !shape_ok(&spec.input.shape, &in_dims) {
        return Err(ModelError::new(
            file,
            format!(
                "the graph's input {:?} has shape {} but {spec_file} says input.shape = {} ({} features)",
                spec.input.name,
                shape_string(&in_dims),
                shape_string(&spec.input.shape),
                spec.features.len()
            ),
            "make the spec's [[features]] and input.shape match the graph (retrain with models/train.py if the features changed)",
        ));
    }
    if !shape_ok(&spec.output.shape, &out_dims) {
        return Err(ModelError::new(
            file,
            format!(
                "the graph's output {:?} has shape {} but {spec_file} says output.shape = {}",
                spec.output.name,
                shape_string(&out_dims),
                shape_string(&spec.output.shape)
            ),
            "make output.shape match the graph",
        ));
    }
    Ok((format!("{in_fact:?}"), format!("{out_fact:?}")))
}

/// Load a model from its spec file, check it against the graph and make it runnable.
///
/// # Errors
/// A bad spec, a missing or unreadable `.onnx`, an operator tract does not
/// support, or an input/output name or shape that disagrees with the spec.
pub fn load(spec_path: &Path) -> Result<Model, ModelError> {
    let spec = read_spec(spec_path)?;
    let onnx_path = spec_path
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(&spec.onnx);
    let file = onnx_path.display().to_string();
    let spec_file = spec_path.display().to_string();
    let bytes = std::fs::read(&onnx_path).map_err(|e| {
        ModelError::new(
            &file,
            format!("cannot read the graph named by {spec_file} (`onnx`): {e}"),
            "put the .onnx file beside the spec, or correct `onnx` (relative to the spec file)",
        )
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let tract_err = |what: &str, e: TractError| tract_error(&file, what, e);
    let model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .map_err(|e| tract_err("tract cannot read the graph", e))?;
    let typed = model
        .into_typed()
        .map_err(|e| tract_err("tract cannot type the graph", e))?;
    let (input_fact, output_fact) = check_graph(&typed, &spec, &file, &spec_file)?;
    let plan = typed
        .into_optimized()
        .map_err(|e| tract_err("tract cannot optimize the graph", e))?
        .into_runnable()
        .map_err(|e| tract_err("tract cannot plan the graph", e))?;
    // The same graph with the batch dim fixed to 1: the optimizer can then
    // drop the symbolic-shape work that a per-event run would repeat.
    let plan_one = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|m| m.with_input_fact(0, f32::fact([1, spec.features.len()]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| tract_err("tract cannot plan the graph for one row", e))?;
    Ok(Model {
        spec,
        spec_path: spec_path.to_path_buf(),
        onnx_path,
        sha256,
        input_fact,
        output_fact,
        plan,
        plan_one,
    })
}

/// The loaded models of a configuration, by the spec path its rules name
/// (`rule.model`, `rule.members[i].model`): each loaded and checked once when
/// the configuration loads ([`crate::config::parse_strategy_with`]), shared by
/// every strategy instance built from it ([`crate::strategy::try_build`]).
#[derive(Clone, Default)]
pub struct Models {
    by_path: BTreeMap<String, Arc<Model>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_path.keys()).finish()
    }
}

impl Models {
    pub fn new() -> Self {
        Models::default()
    }

    /// The model of the spec file at `path`, loaded now unless it already is.
    ///
    /// # Errors
    /// As [`load`].
    pub fn load(&mut self, path: &str) -> Result<Arc<Model>, ModelError> {
        if let Some(m) = self.by_path.get(path) {
            return Ok(m.clone());
        }
        let model = Arc::new(load(Path::new(path))?);
        self.by_path.insert(path.to_string(), model.clone());
        Ok(model)
    }

    /// Every model `rule` names (an ensemble's members, nested rules included).
    ///
    /// # Errors
    /// As [`load`].
    pub fn for_rule(rule: &crate::config::RuleConfig) -> Result<Models, ModelError> {
        let mut models = Models::new();
        models.load_rule(rule)?;
        Ok(models)
    }

    fn load_rule(&mut self, rule: &crate::config::RuleConfig) -> Result<(), ModelError> {
        use crate::config::RuleConfig;
        match rule {
            RuleConfig::Model(r) => {
                self.load(&r.model)?;
            }
            RuleConfig::Expr(r) => {
                crate::expr::compile(r, &mut |p| self.load(p))
                    .map_err(|e| ModelError::new(e.key, e.error.message, e.error.fix))?;
            }
            RuleConfig::Ensemble(r) => {
                for m in &r.members {
                    if let Some(path) = &m.model {
                        self.load(path)?;
                    }
                    if let Some(inner) = &m.rule {
                        self.load_rule(inner)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The model loaded for `path`.
    ///
    /// # Errors
    /// It was not loaded: the rule did not come through [`Models::load`].
    pub fn get(&self, path: &str) -> Result<Arc<Model>, ModelError> {
        self.by_path.get(path).cloned().ok_or_else(|| {
            ModelError::new(
                path,
                "is not among the loaded models",
                "load the strategy through papertrader::config (which loads its models), or call Models::load first",
            )
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Model {
    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.spec.features.len()
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.spec.name.clone(),
            version: self.sha256.clone(),
            spec: self.spec_path.display().to_string(),
        }
    }

    /// The model input for raw feature values: normalized as the spec says.
    pub fn prepare(&self, raw: &[f64], out: &mut Vec<f32>) {
        let norm = &self.spec.normalization;
        match norm.mode {
            NormalizationMode::Folded => out.extend(raw.iter().map(|&x| x as f32)),
            NormalizationMode::Standardize => out.extend(
                raw.iter()
                    .zip(norm.mean.iter().zip(&norm.std))
                    .map(|(&x, (m, s))| ((x - m) / s) as f32),
            ),
        }
    }

    /// Run the graph on prepared inputs (`rows` x features, row-major).
    ///
    /// # Errors
    /// The input has the wrong length, or tract fails.
    pub fn run_prepared(&self, input: &[f32], rows: usize) -> Result<Vec<f64>, ModelError> {
        let n = self.n_features();
        if input.len() != rows * n {
            return Err(ModelError::new(
                self.onnx_path.display().to_string(),
                format!(
                    "{} input values for {rows} rows of {n} features",
                    input.len()
                ),
                "pass one row of every feature per scored event",
            ));
        }
        let tensor = Tensor::from_shape(&[rows, n], input).map_err(|e| self.run_err(e))?;
        let out = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| self.run_err(e))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| self.run_err(e))?;
        Ok(view.iter().map(|&v| v as f64).collect())
    }

    fn run_err(&self, e: TractError) -> ModelError {
        ModelError::new(
            self.onnx_path.display().to_string(),
            format!("inference failed: {e:#}"),
            "check the model with `papertrader models check`",
        )
    }

    /// Score one event: raw feature values in spec order -> the model output.
    ///
    /// # Errors
    /// As [`Model::run_prepared`].
    pub fn score(&self, raw: &[f64]) -> Result<f64, ModelError> {
        let mut input = Vec::with_capacity(raw.len());
        self.prepare(raw, &mut input);
        Ok(self.run_prepared(&input, 1)?[0])
    }

    /// A per-event scorer that keeps its tract state and buffers between
    /// events (one per strategy instance).
    ///
    /// # Errors
    /// tract cannot set up the state.
    pub fn scorer(self: &Arc<Self>) -> Result<Scorer, ModelError> {
        let state = self.plan_one.spawn().map_err(|e| self.run_err(e))?;
        Ok(Scorer {
            model: self.clone(),
            state,
            input: Vec::with_capacity(self.n_features()),
        })
    }

    /// Score several events at once (for example one row per symbol).
    ///
    /// # Errors
    /// As [`Model::run_prepared`].
    pub fn score_batch(&self, rows: &[&[f64]]) -> Result<Vec<f64>, ModelError> {
        let mut input = Vec::with_capacity(rows.len() * self.n_features());
        for r in rows {
            self.prepare(r, &mut input);
        }
        self.run_prepared(&input, rows.len())
    }

    /// The signal strength of an output, in [-1, 1].
    pub fn strength(&self, output: f64) -> f64 {
        match self.spec.output.semantics {
            OutputSemantics::ProbabilityUp => (2.0 * output - 1.0).clamp(-1.0, 1.0),
        }
    }
}

/// Scores one event at a time with a reused tract state ([`Model::scorer`]).
#[derive(Debug)]
pub struct Scorer {
    model: Arc<Model>,
    state: TypedSimpleState,
    input: Vec<f32>,
}

impl Scorer {
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Raw feature values in spec order -> the model output; the same value
    /// as [`Model::score`].
    ///
    /// # Errors
    /// A row of the wrong length, or tract fails.
    pub fn score(&mut self, raw: &[f64]) -> Result<f64, ModelError> {
        let n = self.model.n_features();
        if raw.len() != n {
            return Err(ModelError::new(
                self.model.onnx_path.display().to_string(),
                format!("{} feature values, the model takes {n}", raw.len()),
                "pass one value per feature of the spec",
            ));
        }
        self.input.clear();
        self.model.prepare(raw, &mut self.input);
        let tensor = Tensor::from_shape(&[1, n], &self.input).map_err(|e| self.model.run_err(e))?;
        let out = self
            .state
            .run(tvec!(tensor.into()))
            .map_err(|e| self.model.run_err(e))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| self.model.run_err(e))?;
        view.iter()
            .next()
            .map(|&v| v as f64)
            .ok_or_else(|| self.model.run_err(anyhow::anyhow!("empty output")))
    }
}

/// `models/NAME.reference.json`: inputs and the outputs onnxruntime computed
/// for them (written by `models/train.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub model: String,
    /// sha256 of the `.onnx` file the outputs were computed with.
    pub sha256: String,
    pub producer: String,
    /// Raw feature values, one row per case.
    pub features: Vec<Vec<f64>>,
    /// The model inputs for them (after normalization), as float32 values.
    pub inputs: Vec<Vec<f64>>,
    /// onnxruntime's outputs.
    pub outputs: Vec<Vec<f64>>,
}

/// Largest output difference accepted against the reference.
pub const PARITY_TOLERANCE: f64 = 1e-5;

/// The reference file beside a spec: `NAME.toml` -> `NAME.reference.json`.
pub fn reference_path(spec_path: &Path) -> PathBuf {
    spec_path.with_extension("reference.json")
}

/// Read a reference file.
///
/// # Errors
/// The file is missing or malformed.
pub fn read_reference(path: &Path) -> Result<Reference, ModelError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ModelError::new(
            &file,
            format!("cannot read the reference outputs: {e}"),
            "run models/train.py, which writes NAME.reference.json beside each model",
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ModelError::new(
            &file,
            format!("malformed reference: {e}"),
            "regenerate it with models/train.py",
        )
    })
}

/// How a model compares with its reference outputs.
#[derive(Debug, Clone)]
pub struct Parity {
    pub rows: usize,
    /// Largest |tract - onnxruntime| over every output, batch plan (all rows
    /// in one run) and per-event scorer (one row at a time) alike.
    pub max_abs_diff: f64,
    /// Largest |papertrader's normalization - the reference inputs|.
    pub max_input_diff: f64,
    /// Does the reference name the same model file (same sha256)?
    pub same_hash: bool,
}

impl Parity {
    pub fn ok(&self) -> bool {
        self.same_hash && self.max_abs_diff <= PARITY_TOLERANCE && self.max_input_diff <= 1e-6
    }
}

/// Run the model on the reference inputs (one batch, then row by row through a
/// [`Scorer`] from the raw features) and compare.
///
/// # Errors
/// Inference fails, or the reference rows do not fit the model.
pub fn parity(model: &Arc<Model>, reference: &Reference) -> Result<Parity, ModelError> {
    let n = model.n_features();
    let mut input = Vec::new();
    let mut max_input_diff = 0f64;
    for (raw, want) in reference.features.iter().zip(&reference.inputs) {
        let start = input.len();
        if raw.len() != n || want.len() != n {
            return Err(ModelError::new(
                reference_path(&model.spec_path).display().to_string(),
                format!(
                    "a reference row has {} values, the model takes {n}",
                    raw.len()
                ),
                "regenerate the reference with models/train.py",
            ));
        }
        model.prepare(raw, &mut input);
        for (got, want) in input[start..].iter().zip(want) {
            max_input_diff = max_input_diff.max((*got as f64 - want).abs());
        }
    }
    let exact: Vec<f32> = reference
        .inputs
        .iter()
        .flatten()
        .map(|&x| x as f32)
        .collect();
    let got = model.run_prepared(&exact, reference.inputs.len())?;
    let want: Vec<f64> = reference.outputs.iter().flatten().copied().collect();
    let mut max_abs_diff = if got.len() == want.len() {
        got.iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    } else {
        f64::INFINITY
    };
    let mut scorer = model.scorer()?;
    for (raw, want) in reference.features.iter().zip(&reference.outputs) {
        let got = scorer.score(raw)?;
        let d = want.first().map_or(f64::INFINITY, |w| (got - w).abs());
        max_abs_diff = max_abs_diff.max(d);
    }
    Ok(Parity {
        rows: reference.inputs.len(),
        max_abs_diff,
        max_input_diff,
        same_hash: reference.sha256 == model.sha256,
    })
}

/// Mean wall time of one per-event score ([`Scorer::score`], as the `model`
/// strategy scores) over `iterations` runs.
pub fn time_per_event(scorer: &mut Scorer, row: &[f64], iterations: u32) -> std::time::Duration {
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        let _ = std::hint::black_box(scorer.score(std::hint::black_box(row)));
    }
    started.elapsed() / iterations.max(1)
}

/// The spec files (`*.toml`) of a models directory, sorted.
///
/// # Errors
/// The directory cannot be read.
pub fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ModelError::new(
            dir.display().to_string(),
            format!("cannot read the models directory: {e}"),
            "pass --dir with the directory holding NAME.onnx and NAME.toml",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

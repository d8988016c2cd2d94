//! Operations HE cannot evaluate, with the replacement to suggest.
//!
//! Names are matched after [`normalize`]: case, underscores and a trailing
//! `1d`/`2d`/`3d` do not matter, so PyTorch's spellings (`ReLU`, `MaxPool2d`,
//! `LogSoftmax`, `ReLU6`) get the same help as ours (`relu`, `max_pool`).

/// What kind of non-HE operation a name is; decides the replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Element-wise activations: a polynomial activation replaces them.
    Activation,
    Softmax,
    MaxPool,
    /// Per-input normalisation: batchnorm replaces it.
    Norm,
    Division,
    Attention,
    Recurrent,
    Comparison,
}

impl Family {
    fn help(self) -> &'static str {
        match self {
            Family::Activation => POLY,
            Family::Softmax => SOFTMAX,
            Family::MaxPool => MAXPOOL,
            Family::Norm => NORM,
            Family::Division => DIVISION,
            Family::Attention => ATTENTION,
            Family::Recurrent => RECURRENT,
            Family::Comparison => COMPARISON,
        }
    }
}

/// A known non-HE operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonHe {
    pub family: Family,
    /// What to write instead.
    pub help: &'static str,
    /// Whether the output has the input's shape (then later layers are
    /// still checked with it).
    pub keeps_shape: bool,
}

const POLY: &str = "replace it by a polynomial activation: `act p = poly(degree: 2, fit: relu, range: 13)` (fit: relu, silu or gelu), then write `p`";
const SOFTMAX: &str = "end the network with its last `dense`: the logits are decrypted and softmax runs on the client (training adds it to the loss)";
const MAXPOOL: &str =
    "use `avgpool(kernel: 2)` or `global_avgpool`: averages are additions, max needs comparisons";
const NORM: &str = "use `batchnorm`: its statistics are fixed after training and fold into a linear layer; per-input normalisation needs division and square roots";
const DIVISION: &str =
    "divide only by constants: write `scale(0.5)` (it folds into the next linear layer)";
const ATTENTION: &str = "attention needs softmax and ciphertext-ciphertext products of activations; use convolutions or dense layers with polynomial activations";
const RECURRENT: &str = "recurrent layers need sigmoid and tanh gates at every step; use convolutions over the sequence (`conv` on [channels, 1, length]) with polynomial activations";
const COMPARISON: &str = "HE evaluates only additions and multiplications; approximate it with `poly(...)` over a known range or move it to the client";

/// Every non-HE operation, by normalised name: PyTorch's `torch.nn`
/// activations, softmax variants, max/power pooling, per-input
/// normalisations, attention and recurrent layers, and common functions.
const TABLE: &[(&[&str], Family, bool)] = &[
    (
        &[
            "relu",
            "relu6",
            "leakyrelu",
            "prelu",
            "rrelu",
            "elu",
            "selu",
            "celu",
            "gelu",
            "quickgelu",
            "silu",
            "swish",
            "mish",
            "sigmoid",
            "hardsigmoid",
            "logsigmoid",
            "tanh",
            "hardtanh",
            "tanhshrink",
            "softplus",
            "softsign",
            "softshrink",
            "hardshrink",
            "hardswish",
            "threshold",
        ],
        Family::Activation,
        true,
    ),
    (&["glu"], Family::Activation, false),
    (&["softmax", "softmin", "logsoftmax"], Family::Softmax, true),
    (&["adaptivelogsoftmaxwithloss"], Family::Softmax, false),
    (
        &[
            "maxpool",
            "adaptivemaxpool",
            "fractionalmaxpool",
            "maxunpool",
            "lppool",
        ],
        Family::MaxPool,
        false,
    ),
    (
        &[
            "layernorm",
            "groupnorm",
            "instancenorm",
            "rmsnorm",
            "localresponsenorm",
            "crossmaplrn",
        ],
        Family::Norm,
        true,
    ),
    (
        &[
            "div",
            "divide",
            "reciprocal",
            "inverse",
            "sqrt",
            "rsqrt",
            "normalize",
        ],
        Family::Division,
        true,
    ),
    (
        &[
            "attention",
            "selfattention",
            "multiheadattention",
            "mha",
            "transformer",
            "transformerencoder",
            "transformerdecoder",
            "transformerencoderlayer",
            "transformerdecoderlayer",
        ],
        Family::Attention,
        false,
    ),
    (
        &["rnn", "lstm", "gru", "rnncell", "lstmcell", "grucell"],
        Family::Recurrent,
        false,
    ),
    (
        &[
            "exp", "log", "abs", "max", "min", "argmax", "argmin", "sign", "clamp", "round",
            "floor", "ceil",
        ],
        Family::Comparison,
        true,
    ),
];

/// PyTorch names of layers pnnc has, lower case without underscores (the
/// dimension suffix matters here: pnnc's `conv` and `avgpool` are 2-D).
const PYTORCH: &[(&str, &str)] = &[
    ("linear", "dense"),
    ("dense", "dense"),
    ("conv", "conv"),
    ("conv2d", "conv"),
    ("batchnorm", "batchnorm"),
    ("batchnorm1d", "batchnorm"),
    ("batchnorm2d", "batchnorm"),
    ("avgpool", "avgpool"),
    ("avgpool2d", "avgpool"),
    ("adaptiveavgpool1d", "global_avgpool"),
    ("adaptiveavgpool2d", "global_avgpool"),
    ("globalavgpool", "global_avgpool"),
    ("flatten", "flatten"),
    ("dropout", "dropout"),
    ("dropout1d", "dropout"),
    ("dropout2d", "dropout"),
    ("scale", "scale"),
];

/// Lower case, without underscores and without a trailing `1d`/`2d`/`3d`.
pub fn normalize(name: &str) -> String {
    let mut n: String = name
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if n.len() > 2 && (n.ends_with("1d") || n.ends_with("2d") || n.ends_with("3d")) {
        n.truncate(n.len() - 2);
    }
    n
}

/// The known non-HE operation `name` spells, if any.
pub fn lookup(name: &str) -> Option<NonHe> {
    let n = normalize(name);
    TABLE
        .iter()
        .find(|(names, _, _)| names.contains(&n.as_str()))
        .map(|&(_, family, keeps_shape)| NonHe {
            family,
            help: family.help(),
            keeps_shape,
        })
}

/// The HE-compatible replacement for a known non-HE operation, or None when
/// `name` is not one.
pub fn replacement(name: &str) -> Option<&'static str> {
    lookup(name).map(|n| n.help)
}

/// pnnc's name for a layer written in another spelling (`Conv2d`, `Linear`,
/// `AdaptiveAvgPool2d`), when it is not already pnnc's own.
pub fn pytorch_spelling(name: &str) -> Option<&'static str> {
    let n: String = name
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    PYTORCH
        .iter()
        .find(|(theirs, _)| *theirs == n)
        .map(|(_, ours)| *ours)
        .filter(|ours| *ours != name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_spellings_match_case_insensitively() {
        for name in [
            "ReLU",
            "MaxPool2d",
            "Softmax",
            "PReLU",
            "Hardtanh",
            "LogSoftmax",
            "ReLU6",
            "LeakyReLU",
            "GELU",
            "SiLU",
            "LayerNorm",
            "InstanceNorm2d",
            "MultiheadAttention",
            "AdaptiveMaxPool1d",
            "LSTM",
            "leaky_relu",
            "max_pool",
        ] {
            assert!(lookup(name).is_some(), "{name} not recognised");
        }
        assert_eq!(lookup("MaxPool2d").map(|n| n.keeps_shape), Some(false));
        assert_eq!(lookup("ReLU6").map(|n| n.keeps_shape), Some(true));
        for he_ok in [
            "dense",
            "conv",
            "Conv2d",
            "BatchNorm2d",
            "AvgPool2d",
            "poly",
        ] {
            assert!(lookup(he_ok).is_none(), "{he_ok} is HE-compatible");
        }
    }

    #[test]
    fn pytorch_names_of_our_layers() {
        assert_eq!(pytorch_spelling("Conv2d"), Some("conv"));
        assert_eq!(pytorch_spelling("Linear"), Some("dense"));
        assert_eq!(
            pytorch_spelling("AdaptiveAvgPool2d"),
            Some("global_avgpool")
        );
        assert_eq!(pytorch_spelling("BatchNorm1d"), Some("batchnorm"));
        assert_eq!(pytorch_spelling("dense"), None);
        assert_eq!(pytorch_spelling("Conv1d"), None);
    }
}

//! Operations HE cannot evaluate, with the replacement to suggest.

/// The HE-compatible replacement for a known non-HE operation, or None when
/// `name` is not one.
pub fn replacement(name: &str) -> Option<&'static str> {
    Some(match name {
        "relu" | "leaky_relu" | "elu" | "gelu" | "silu" | "swish" | "mish" | "sigmoid" | "tanh"
        | "softplus" => {
            "replace it by a polynomial activation: `act p = poly(degree: 2, fit: relu, range: 13)` (fit: relu, silu or gelu), then write `p`"
        }
        "softmax" | "log_softmax" => {
            "end the network with its last `dense`: the logits are decrypted and softmax runs on the client (training adds it to the loss)"
        }
        "maxpool" | "max_pool" | "maxpool2d" | "adaptive_maxpool" => {
            "use `avgpool(kernel: 2)` or `global_avgpool`: averages are additions, max needs comparisons"
        }
        "layernorm" | "layer_norm" | "groupnorm" | "group_norm" | "instancenorm" | "rmsnorm" => {
            "use `batchnorm`: its statistics are fixed after training and fold into a linear layer; per-input normalisation needs division and square roots"
        }
        "div" | "divide" | "reciprocal" | "inverse" | "sqrt" | "rsqrt" | "normalize" => {
            "divide only by constants: write `scale(0.5)` (it folds into the next linear layer)"
        }
        "attention" | "self_attention" | "multihead_attention" | "mha" | "transformer" => {
            "attention needs softmax and ciphertext-ciphertext products of activations; use convolutions or dense layers with polynomial activations"
        }
        "exp" | "log" | "abs" | "max" | "min" | "argmax" | "sign" | "clamp" => {
            "HE evaluates only additions and multiplications; approximate it with `poly(...)` over a known range or move it to the client"
        }
        _ => return None,
    })
}

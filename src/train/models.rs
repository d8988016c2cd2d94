//! Checked-model IR built in code: the benchmark networks of
//! `shared/bench/torch_reference.py` (used by the training benchmark while
//! the `.pnn` parser is not on this branch) and small test models.

use crate::ir::{
    Basis, FitMethod, FitTarget, HeConfig, Model, Op, OpKind, Optimizer, PolyAct, Schedule, Scheme,
    Shape, SrcLoc, TrainConfig,
};

/// Appends ops to a sequence, tracking the current shape.
pub struct SeqBuilder {
    pub ops: Vec<Op>,
    pub shape: Vec<usize>,
    prefix: String,
    count: usize,
}

impl SeqBuilder {
    pub fn new(prefix: &str, input: Vec<usize>) -> Self {
        SeqBuilder {
            ops: Vec::new(),
            shape: input,
            prefix: prefix.to_string(),
            count: 0,
        }
    }

    fn push(&mut self, kind: OpKind, output: Vec<usize>) -> &mut Self {
        let name = format!("{}{}{}", self.prefix, kind.keyword(), self.count);
        self.count += 1;
        let op = Op {
            name,
            kind,
            input: Shape(self.shape.clone()),
            output: Shape(output.clone()),
            params: 0,
            levels: 0,
            level: 0,
            loc: SrcLoc::default(),
        };
        let params = op
            .param_shapes()
            .iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum();
        self.ops.push(Op { params, ..op });
        self.shape = output;
        self
    }

    pub fn dense(&mut self, out: usize, bias: bool) -> &mut Self {
        let in_features = self.shape.iter().product();
        self.push(
            OpKind::Dense {
                in_features,
                out_features: out,
                bias,
            },
            vec![out],
        )
    }

    pub fn conv(
        &mut self,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> &mut Self {
        let (h, w) = (self.shape[1], self.shape[2]);
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        self.push(
            OpKind::Conv {
                in_channels: self.shape[0],
                out_channels: out,
                kernel: [k, k],
                stride: [stride, stride],
                padding: [pad, pad],
                bias,
                groups: 1,
            },
            vec![out, oh, ow],
        )
    }

    pub fn poly(&mut self, act: &PolyAct) -> &mut Self {
        let s = self.shape.clone();
        self.push(OpKind::Poly(act.clone()), s)
    }

    pub fn batchnorm(&mut self) -> &mut Self {
        let s = self.shape.clone();
        self.push(
            OpKind::BatchNorm {
                channels: s[0],
                eps: 1e-5,
                momentum: 0.1,
                foldable: true,
            },
            s,
        )
    }

    pub fn avgpool(&mut self, k: usize, stride: usize) -> &mut Self {
        let s = &self.shape;
        let out = vec![s[0], (s[1] - k) / stride + 1, (s[2] - k) / stride + 1];
        self.push(
            OpKind::AvgPool {
                kernel: [k, k],
                stride: [stride, stride],
            },
            out,
        )
    }

    pub fn global_avgpool(&mut self) -> &mut Self {
        let c = self.shape[0];
        self.push(OpKind::GlobalAvgPool, vec![c])
    }

    pub fn flatten(&mut self) -> &mut Self {
        let n = self.shape.iter().product();
        self.push(OpKind::Flatten, vec![n])
    }

    pub fn dropout(&mut self, p: f64) -> &mut Self {
        let s = self.shape.clone();
        self.push(OpKind::Dropout { p }, s)
    }

    pub fn scale(&mut self, factor: f64) -> &mut Self {
        let s = self.shape.clone();
        self.push(OpKind::Scale { factor }, s)
    }

    /// A residual whose body and shortcut are built by the closures.
    pub fn residual(
        &mut self,
        body: impl FnOnce(&mut SeqBuilder),
        shortcut: impl FnOnce(&mut SeqBuilder),
    ) -> &mut Self {
        let name = format!("{}residual{}.", self.prefix, self.count);
        let mut b = SeqBuilder::new(&format!("{name}body."), self.shape.clone());
        body(&mut b);
        let mut s = SeqBuilder::new(&format!("{name}short."), self.shape.clone());
        shortcut(&mut s);
        let out = b.shape.clone();
        let params = b.ops.iter().chain(&s.ops).map(|o| o.params).sum::<u64>();
        self.push(
            OpKind::Residual {
                body: b.ops,
                shortcut: s.ops,
            },
            out,
        );
        if let Some(op) = self.ops.last_mut() {
            op.params = params;
        }
        self
    }
}

/// The paper's least-squares ReLU fit at `degree` on [-range, range].
pub fn relu_poly(degree: u32, range: f64, basis: Basis) -> PolyAct {
    PolyAct {
        def: "p".into(),
        degree,
        basis,
        range,
        fit: FitTarget::Relu,
        fit_method: FitMethod::LeastSquares { points: 100 },
        learnable: true,
        coeffs: None,
    }
}

pub fn model_from_ops(name: &str, input: Vec<usize>, classes: usize, net: Vec<Op>) -> Model {
    let params = net.iter().map(|o| o.params).sum();
    Model {
        name: name.into(),
        source_hash: String::new(),
        input: Shape(input),
        classes,
        class_names: Vec::new(),
        net,
        train: TrainConfig {
            data: None,
            epochs: 1,
            batch: 128,
            seed: 1,
            optimizer: Optimizer::AdamW {
                lr: 1e-3,
                weight_decay: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            poly_lr_scale: 0.1,
            schedule: Schedule::Constant,
            boundary: None,
            clip: None,
        },
        he: HeConfig {
            scheme: Scheme::Ckks,
            security: 128,
            depth_budget: None,
        },
        params,
        depth: 0,
    }
}

/// Benchmark networks as in `shared/bench/torch_reference.py`.
pub fn bench_model(name: &str, act: &PolyAct) -> Option<Model> {
    match name {
        "har_mlp" => {
            let mut s = SeqBuilder::new("", vec![6, 128]);
            s.flatten();
            for w in [256, 128, 64, 32, 16] {
                s.dense(w, true).poly(act).batchnorm();
            }
            s.dense(64, true).poly(act).dense(6, true);
            Some(model_from_ops(name, vec![6, 128], 6, s.ops))
        }
        "mnist_cnn" => {
            let mut s = SeqBuilder::new("", vec![1, 28, 28]);
            s.conv(16, 3, 1, 1, false).poly(act).batchnorm();
            s.conv(32, 3, 2, 1, false).poly(act).batchnorm();
            s.conv(64, 3, 2, 1, false).poly(act).batchnorm();
            s.global_avgpool().flatten().dense(10, true);
            Some(model_from_ops(name, vec![1, 28, 28], 10, s.ops))
        }
        "resnet20" => {
            let mut s = SeqBuilder::new("", vec![3, 32, 32]);
            s.conv(16, 3, 1, 1, false).poly(act).batchnorm();
            let mut cin = 16;
            for (i, w) in [16, 32, 64].into_iter().enumerate() {
                for b in 0..3 {
                    let stride = if b == 0 && i > 0 { 2 } else { 1 };
                    s.residual(
                        |body| {
                            body.conv(w, 3, stride, 1, false).poly(act).batchnorm();
                            body.conv(w, 3, 1, 1, false);
                        },
                        |short| {
                            if stride != 1 || cin != w {
                                short.conv(w, 1, stride, 0, false).batchnorm();
                            }
                        },
                    );
                    s.poly(act).batchnorm();
                    cin = w;
                }
            }
            s.global_avgpool().flatten().dense(10, true);
            Some(model_from_ops(name, vec![3, 32, 32], 10, s.ops))
        }
        _ => None,
    }
}

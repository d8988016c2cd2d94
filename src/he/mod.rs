//! HE compilation: checked IR + trained weights -> CKKS circuit (`circuit`),
//! plus the plaintext reference evaluator of the IR and the circuit simulator.

pub mod circuit;

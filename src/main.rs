fn main() {
    println!("pnnc {}", env!("CARGO_PKG_VERSION"));
}

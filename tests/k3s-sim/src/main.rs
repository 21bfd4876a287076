//! k3s simulator entry point (built out by the simulator issue).
fn main() {
    println!("k3s version v0.0.0+k3s0 (simulator)");
}

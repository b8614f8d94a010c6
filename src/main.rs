fn main() {
    std::process::exit(btvisor_cli::main())
}

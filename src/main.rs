//! The `vel_tutor` binary: parses the command line and hands over to the library.

fn main() {
    std::process::exit(vel_tutor::cli::main());
}

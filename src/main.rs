//! The `papertrader` binary: the command line of [`papertrader::cli`].

fn main() {
    papertrader::cli::main();
}

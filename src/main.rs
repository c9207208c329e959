//! The `ringway` binary: Envoy's command line over Ringway's server.

use ringway::access_log::Sinks;
use ringway::cli::{self, Mode, Parsed};
use ringway::config;
use ringway::snapshot::ConfigSnapshot;
use ringway::stats::Store;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` option (its enum position in 2.x).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs before `main` and before the first allocation: with mimalloc's
/// default eager commit, its first arena stays resident once touched, so
/// memory freed after a burst of connections never left the process.
extern "C" fn tune_allocator() {
    // SAFETY: mi_option_set only records an option value; it is safe to
    // call before the allocator's first use.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("proxy-config") {
        return match ringway::proxy_config::run(&args[1..]) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringway proxy-config: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = match cli::parse(args) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringway: {e}");
            return ExitCode::from(1);
        }
    };
    ringway::logger::init(cli.log_level);
    if let Some(format) = &cli.log_format {
        ringway::logger::set_format(ringway::log_format::Pattern::text(format));
    }
    let name = cli.config_path.clone().unwrap_or_default();
    let validate = cli.mode == Mode::Validate;
    let concurrency = if validate { 1 } else { cli.concurrency.max(1) };
    let store = Store::new(concurrency);
    let sinks = Sinks::new();
    let loaded = config::load(cli.config_path.as_deref(), cli.config_yaml.as_deref())
        .map_err(|e| vec![e])
        .and_then(|tree| {
            // A bootstrap with errors is still compiled (never served), so
            // one error does not hide another found only there.
            let (boot, mut errors) = config::decode_partial(&tree);
            let serve = !validate && errors.is_empty();
            let compiled = boot
                .as_ref()
                .map(|b| ConfigSnapshot::compile(b, serve, &store, &sinks));
            match (boot, compiled) {
                (Some(boot), Some(Ok(snapshot))) if errors.is_empty() => Ok((tree, boot, snapshot)),
                (_, Some(Err(more))) => {
                    errors.extend(more);
                    Err(errors)
                }
                _ => Err(errors),
            }
        });
    let (tree, boot, snapshot) = match loaded {
        Ok(s) => s,
        Err(errors) => {
            if cli.json_errors {
                print_report(&name, &errors);
            } else {
                eprintln!("configuration '{name}' is invalid:");
                for e in &errors {
                    eprintln!("  {e}");
                }
            }
            return ExitCode::from(1);
        }
    };
    if let Some(format) = &boot.log_format {
        if cli.log_format.is_some() {
            eprintln!("Only one of ApplicationLogConfig.log_format or CLI option --log-format can be specified.");
            return ExitCode::from(1);
        }
        ringway::logger::set_format(format.clone());
    }
    if validate {
        if cli.json_errors {
            print_report(&name, &[]);
        } else {
            println!("configuration '{name}' OK");
        }
        return ExitCode::SUCCESS;
    }
    store.set_connection_limit(boot.overload.max_downstream_connections);
    store.runtime.configure(boot.runtime.clone());
    store.set_stats_options(boot.stats.clone());
    let mut xds = ringway::xds::Xds::new(&boot, cli.drain_time);
    let (snapshot, xds) = if xds.is_dynamic() {
        match xds.start(snapshot, &store, &sinks) {
            Ok(snapshot) => (snapshot, Some(xds)),
            Err(e) => {
                eprintln!("ringway: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        (snapshot, None)
    };
    let options = ringway::server::Options {
        drain_time: cli.drain_time,
        admin: boot.admin,
        command_line: cli.to_json(),
        node: boot.node,
        bootstrap: tree,
        overload: boot.overload.clone(),
        outlier_event_log: boot.outlier_event_log.clone(),
        restart: ringway::server::Restart {
            epoch: cli.restart_epoch,
            base_id: cli.base_id,
            parent_shutdown: cli.parent_shutdown,
            enabled: cli.hot_restart,
        },
    };
    match ringway::server::run(snapshot, &options, store, sinks, xds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `--mode validate -o json`: the verdict on `name` as one JSON document.
fn print_report(name: &str, errors: &[config::ConfigError]) {
    let records: Vec<_> = errors.iter().map(|e| e.to_json()).collect();
    let report = serde_json::json!({"config": name, "valid": errors.is_empty(), "errors": records});
    println!("{report:#}");
}

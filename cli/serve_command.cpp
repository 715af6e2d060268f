// serve: the daemon (daemon/), configured from flags, the config file and the environment.
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "commands.h"
#include "daemon/daemon.h"
#include "options.h"

namespace ilre::cli {

void register_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Run the daemon: an OpenAI-compatible HTTP server over document streams");
  auto a = std::make_shared<CommonArgs>();
  auto d = std::make_shared<daemon::DaemonOptions>();
  auto max_body_mb = std::make_shared<int64_t>(64);
  auto grace = std::make_shared<int64_t>(30);
  auto timeout = std::make_shared<int64_t>(10);
  add_common(cmd, *a);
  cmd->add_option("--host", d->server.host, "address to bind (loopback unless you say otherwise)")->capture_default_str();
  cmd->add_option("--port", d->server.port, "port (0: any free port, printed in the log)")->capture_default_str();
  cmd->add_option("--data-dir", d->data_dir, "one store per document; reloaded at start")->capture_default_str();
  cmd->add_option("--api-key", d->service.api_key, "key clients must send (Authorization: Bearer KEY); default $ILRE_API_KEY");
  cmd->add_option("--max-body-mb", *max_body_mb, "largest JSON request body (an append's body has no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--parallel", d->service.parallel, "answers at once (and as many appends at once)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-waiting", d->service.max_waiting, "requests that may wait for a slot; more get 503 + Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--max-connections", d->server.max_connections, "open connections at most; more get 503")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--timeout", *timeout, "seconds a client has to send a request head (slow clients are closed)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3600}));
  auto idle = std::make_shared<int64_t>(30);
  cmd->add_option("--idle-timeout", *idle, "seconds a keep-alive connection may stay idle, and the longest pause inside a body")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  cmd->add_option("--grace", *grace, "seconds running requests may finish after SIGTERM before they are cancelled")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  cmd->callback([=, &app] {
    if (app.get_option("--log-level")->count() == 0) spdlog::set_level(spdlog::level::info);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    daemon::DaemonOptions opts = *d;
    opts.config = resolve_config(*a);
    if (opts.service.api_key.empty()) {
      if (const char* k = std::getenv("ILRE_API_KEY")) opts.service.api_key = k;
    }
    opts.service.max_body_bytes = static_cast<uint64_t>(*max_body_mb) << 20;
    opts.server.header_timeout = std::chrono::seconds(*timeout);
    opts.server.idle_timeout = std::chrono::seconds(*idle);
    opts.grace = std::chrono::seconds(*grace);
    const int code = daemon::run_daemon(std::move(opts));
    if (code != 0) std::exit(code);
  });
}

}  // namespace ilre::cli

// `ilre serve`: the daemon's life cycle. It listens at once (GET /health says "loading"), loads the model
// and the documents of the data directory, serves until SIGTERM or SIGINT, then stops accepting, lets
// running requests finish for a grace period, cancels what is left and exits 0.
#pragma once

#include <chrono>
#include <string>

#include "daemon/http_server.h"
#include "daemon/service.h"
#include "ilre/config.h"

namespace ilre::daemon {

struct DaemonOptions {
  Config config;
  ServerOptions server;
  ServiceOptions service;
  std::string data_dir = "ilre-data";
  std::chrono::seconds grace{30};
};

// Blocks SIGINT/SIGTERM in the calling thread (call it before any thread starts, so every thread
// inherits the mask), then runs the daemon; returns the process exit code.
int run_daemon(DaemonOptions options);

}  // namespace ilre::daemon

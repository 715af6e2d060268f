#include "daemon/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <spdlog/spdlog.h>

#include <thread>

#include "daemon/documents.h"
#include "ilre/engine.h"

namespace ilre::daemon {

int run_daemon(DaemonOptions options) {
  // Signals are taken by sigwait on this thread only; SIGUSR1 is the loader saying it failed.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Service service(options.service);
  HttpServer server(options.server, [&service](Exchange& ex) { service.handle(ex); });
  if (auto r = server.listen(); !r) {
    spdlog::error("{}", r.error().what());
    return 1;
  }
  spdlog::info("listening on http://{}:{} (data dir {}{})", options.server.host, server.port(), options.data_dir,
               options.service.api_key.empty() ? ", no API key" : ", API key required");
  std::thread acceptor([&server] { server.run(); });

  std::atomic<bool> load_failed{false};
  std::thread loader([&] {
    auto engine = Engine::open(options.config);
    if (!engine) {
      spdlog::error("cannot load the model: {}", engine.error().what());
      load_failed = true;
      ::kill(::getpid(), SIGUSR1);
      return;
    }
    auto docs = std::make_shared<Documents>(*engine, options.data_dir);
    auto n = docs->load();
    if (!n) {
      spdlog::error("{}", n.error().what());
      load_failed = true;
      ::kill(::getpid(), SIGUSR1);
      return;
    }
    service.set_ready(*engine, docs);
    spdlog::info("ready: model {}, {} documents", (*engine)->model_name(), *n);
  });

  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("{}: stopping (grace period {} s)", sig == SIGUSR1 ? "start-up failed" : strsignal(sig), options.grace.count());
  server.stop();
  acceptor.join();
  if (!server.wait_connections(options.grace)) {
    spdlog::warn("cancelling {} running requests", server.connections());
    service.cancel_all();
    if (!server.wait_connections(std::chrono::seconds(10))) spdlog::warn("{} connections did not end", server.connections());
  }
  loader.join();
  // Stores need no flush here: every acknowledged append was durable when it was acknowledged.
  spdlog::info("stopped");
  return load_failed ? 1 : 0;
}

}  // namespace ilre::daemon

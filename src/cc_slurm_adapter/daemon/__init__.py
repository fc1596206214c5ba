"""``-daemon`` mode: the sync between Slurm and cc-backend, with durable state.

``engine``   the decisions (records + store → transitions and outbox entries); pure
             but for the store, tested with hand-made records
``loop``     the asyncio tasks: poll per cluster, outbox drain, reconciliation,
             topology refresh, housekeeping
``realtime`` Prolog/Epilog events → the job asked for at once → start/stop through
             the engine
``nats_drain`` the outbox's NATS entries, published in order
``ipc``      the hook socket (upstream's address forms and message)
``process``  pid file, systemd notifications, the SIGHUP reload

:func:`run` is what ``cc-slurm-adapter -daemon -config FILE`` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from cc_slurm_adapter.config import Config, load_config
from cc_slurm_adapter.errors import (
    EXIT_ERROR,
    EXIT_OK,
    AdapterError,
    ConfigError,
    SlurmError,
    StoreError,
)
from cc_slurm_adapter.slurm.runner import Runner

from .engine import CycleReport, Engine, EngineSettings
from .ipc import IpcServer
from .loop import Daemon
from .process import Notifier, PidFile, PidFileError, config_changes

__all__ = ["CycleReport", "Daemon", "Engine", "EngineSettings", "run", "serve"]

log = logging.getLogger("cc_slurm_adapter.daemon")


def run(config: Config) -> int:
    """Run the daemon until SIGTERM/SIGINT; 0 on a clean stop, 1 if it cannot start."""
    from cc_slurm_adapter.daemon.loop import fix_malloc_thresholds

    fix_malloc_thresholds()  # this process's heap only: not in serve(), which tests call
    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:
        return EXIT_OK


async def serve(config: Config, *, notifier: Notifier | None = None,
                setup_retry_s: float | None = None, runner: Runner | None = None) -> int:
    """:func:`run` inside a running event loop (tests call this directly)."""
    from cc_slurm_adapter.ccbackend import CCBackendClient
    from cc_slurm_adapter.slurm.runner import CommandRunner
    from cc_slurm_adapter.store import open_store

    notifier = notifier or Notifier()
    pid_file = PidFile(config.pid_file_path)
    try:
        pid_file.check()
        store = open_store(config.state_path)
    except (PidFileError, StoreError) as exc:
        log.error("%s", exc)
        return EXIT_ERROR
    try:
        try:
            pid_file.write()
        except PidFileError as exc:
            log.error("%s", exc)
            return EXIT_ERROR
        try:
            client = CCBackendClient(config.cc_rest_url, config.cc_rest_jwt,
                                     profile=config.cc_rest_profile,
                                     timeout=float(config.cc_rest_timeout),
                                     ca_file=getattr(config, "cc_rest_ca_file", "") or None)
        except ConfigError as exc:
            log.error("%s", exc)
            return EXIT_ERROR
        if runner is None:
            runner = CommandRunner(timeout=float(config.slurm_command_timeout))
        publisher = None
        if config.nats_enabled:
            from cc_slurm_adapter.nats import NatsPublisher

            publisher = NatsPublisher(config)
            await publisher.start()  # connects in the background, never raises
        try:
            try:
                daemon = Daemon(config, store=store, client=client, runner=runner,
                                notifier=notifier, publisher=publisher)
            except StoreError as exc:
                log.error("%s", exc)
                return EXIT_ERROR
            return await _serve(daemon, config, notifier, setup_retry_s)
        finally:
            if publisher is not None:
                await publisher.close()
            await client.aclose()
    finally:
        store.close()
        pid_file.remove()


async def _serve(daemon: Daemon, config: Config, notifier: Notifier,
                 setup_retry_s: float | None) -> int:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    reloads: set[asyncio.Task[None]] = set()

    def stop(signame: str) -> None:
        if not daemon.stopping.is_set():
            log.warning("%s: finishing the submissions in flight, then stopping", signame)
        daemon.stopping.set()

    def reload() -> None:
        task = loop.create_task(_reload(daemon))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig, handler in ((signal.SIGTERM, lambda: stop("SIGTERM")),
                         (signal.SIGINT, lambda: stop("SIGINT")),
                         (signal.SIGHUP, reload)):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): the caller sets daemon.stopping
    stack = contextlib.AsyncExitStack()
    try:
        # before the setup, so that a daemon still waiting for Slurm can be scraped;
        # prometheus_client is imported only here (RSS)
        if config.metrics_listen:
            from cc_slurm_adapter.metrics import start_metrics

            metrics = await start_metrics(daemon, config)
            if metrics is not None:
                stack.push_async_callback(metrics.close)
        retry = setup_retry_s if setup_retry_s is not None else float(
            max(1, config.slurm_poll_interval))
        while True:
            try:
                await daemon.setup()
                break
            except SlurmError as exc:
                log.error("cannot ask Slurm (%s); trying again in %g s", exc, retry)
            except StoreError as exc:
                log.error("%s", exc)
                return EXIT_ERROR
            try:
                await asyncio.wait_for(daemon.stopping.wait(), retry)
                return EXIT_OK
            except TimeoutError:
                continue
        if not config.cc_rest_submit_jobs:
            log.info("ccRestSubmitJobs is false: jobs go to cc-backend over NATS only "
                     "(REST is still asked for the running jobs and the topology)")
        listener = IpcServer.from_config(
            config, daemon.hook_event,
            slurm_user=daemon.info.slurm_user if daemon.info is not None else None)
        try:
            await listener.start()
        except OSError as exc:
            log.error("cannot listen for Prolog/Epilog events on %s (%s); jobs still "
                      "arrive with every poll", config.prep_sock_listen_path,
                      exc.strerror or exc)
        stack.push_async_callback(listener.close)
        notifier.ready(daemon.status_line())
        log.info("daemon running (pid file %s, state %s)", config.pid_file_path,
                 config.state_path)
        await daemon.run_until_stopped()
    except AdapterError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
    finally:
        notifier.stopping()
        await stack.aclose()
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("daemon stopped")
    return EXIT_OK


async def _reload(daemon: Daemon) -> None:
    old = daemon.config
    try:
        loaded = load_config(old.source, purpose="daemon")
    except ConfigError as exc:
        log.error("SIGHUP: config not reloaded, the running one stays: %s", exc)
        return
    for warning in loaded.warnings:
        log.warning("%s", warning)
    taken, restart = config_changes(old, loaded.config)
    for line in taken:
        log.warning("SIGHUP: %s", line)
    for line in restart:
        log.warning("SIGHUP: %s (needs a restart to take effect)", line)
    if not taken and not restart:
        log.warning("SIGHUP: config %s reloaded, nothing changed", old.source)
    daemon.set_config(_merge(old, loaded.config))
    daemon.wake_poll.set()


def _merge(old: Config, new: Config) -> Config:
    """``new``'s reloadable fields on ``old``'s others."""
    import dataclasses

    from .process import RELOADABLE

    return dataclasses.replace(old, **{name: getattr(new, name) for name in RELOADABLE})

"""The container stage1 (flavor `coreos`): a pod isolated by Linux namespaces and cgroups.

Entrypoints: `python -m pyrkt.stage1.container run|enter|stop|gc ...` (rkt's stage1
contract, see `args`). Library face, for other flavors and tests:

- `run.execute(plan: PodPlan, pod: Path, opts: RunOptions = RunOptions()) -> int`:
  runs every app of the plan in one pod from the calling process (which it moves into
  new mount/UTS/IPC/PID(/net) namespaces: call it in a process of its own) and returns
  the first failing app's exit code. `RunOptions(netns=PATH)` joins a network namespace
  made by pyrkt.net instead of a fresh one with only `lo`.
- `args.parse_run / parse_enter / parse_stop`: the contract's flags, shared by flavors.
- `app.become_app(app: AppPlan, ...)`: chroot, user, groups, caps, no_new_privs, exec.

Process tree: the `run` process (holds the pod lock) -> pod init (PID 1 of the pod,
writes `POD/pid`, reaps, writes each app's exit status) -> one child per app.
"""

"""rkt's tests/rkt_exit_test.go: `rkt run` exits with the app's code and `rkt status`
shows it (app-NAME=CODE); in a pod of several apps, the first app that fails stops the
pod (the others get SIGTERM), `rkt run` returns with the failing app's code, and the
status of each app is what it really got (143: killed by SIGTERM; rkt's systemd said 0).
rkt ran these under coreos only; a user expects the same of a VM pod."""

from __future__ import annotations

import pytest
from rktcompat import ImageMaker, Rkt, on


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_exit_code_simple(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    for code in range(3):
        image = make_image(name="example.com/rkt-inspect",
                           app={"exec": ["/bin/sh", "-c", f"echo Hello; exit {code}"]})
        cp = rkt.run(str(image))
        assert (cp.returncode, cp.stdout) == (code, "Hello\n"), cp.stderr
        uuid = rkt.only_uuid()
        assert rkt.status(uuid)["app-rkt-inspect"] == str(code)
        rkt("rm", uuid)


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_exit_code_with_several_apps(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    def app(name: str, code: int, wait: int) -> str:
        return str(make_image(name=f"example.com/{name}", app={
            "exec": ["/bin/sh", "-c", f"echo HelloWorld; sleep {wait}; exit {code}"]}))

    # hello2 would sleep for ten minutes: hello1's failure stops it (the run's timeout
    # is far shorter than that)
    cp = rkt.run(app("hello0", 0, 1), app("hello1", 5, 3), app("hello2", 6, 600),
                 timeout=300)
    assert (cp.returncode, cp.stdout) == (5, "HelloWorld\n" * 3), cp.stderr
    status = rkt.status(rkt.only_uuid())
    assert (status["app-hello0"], status["app-hello1"], status["app-hello2"]) == \
        ("0", "5", "143")


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_failing_pre_start_fails_the_app(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    handlers = [{"name": "pre-start", "exec": ["/bin/sh", "-c", "echo pre; exit 7"]}]
    image = make_image(app={"exec": ["/bin/echo", "app"], "eventHandlers": handlers})
    cp = rkt.run(str(image))
    assert (cp.returncode, cp.stdout) == (7, "pre\n"), cp.stderr

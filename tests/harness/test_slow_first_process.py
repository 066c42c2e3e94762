"""Two processes where the first one's preparation outlasts Gloo's connect timeout."""

import subprocess
import sys

from cli_runs import ROOT, environment


def test_a_process_waits_for_a_slow_first_process_then_collectives_work():
    """Process 0's preparation takes 35 s, longer than Gloo's 30 s default timeout: process 1
    waits on the coordination service (not a device collective) and both then all-gather.
    Process 0's failure reaches process 1 by message; a wait past its timeout is refused."""
    from cli_runs import free_port
    port, sleep_s = free_port(), 35
    processes = [subprocess.Popen(
        [sys.executable, "tests/slow_host.py", str(port), str(i), str(sleep_s)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(devices=1))
        for i in range(2)]
    outputs = [p.communicate(timeout=240) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    zero, one = ([line for line in out.splitlines() if not line.startswith("[Gloo]")]
                 for out, _ in outputs)
    assert zero[0] == "failure: disk full"
    assert one[0] == ("failure: 'failing preparation' failed on process 0: OSError: disk full")
    assert zero[1] == "too slow: finished"
    assert one[1].startswith("timeout: process 1 waited 1 s for process 0 to finish 'too slow'")
    assert "config.data.prepare_timeout_s" in one[1]
    waited = float(one[2].split()[2])
    assert waited >= sleep_s - 5, one[2]  # process 0 slept 4 s of it in the previous call
    assert zero[2].endswith("allgather [1.0, 2.0]") and one[2].endswith("allgather [1.0, 2.0]")

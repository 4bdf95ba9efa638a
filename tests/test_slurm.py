"""`atlas slurm`: the scripts it writes, and whole jobs on a real one-node Slurm (Debian's slurmctld,
slurmd and munge, started by a session fixture for these tests and stopped after them; installed with
apt where missing and allowed). Without Slurm the job tests skip, and the end of the log says so."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, error_line, run_atlas, tree_bytes, tree_json

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "scancel")
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DONE_WHEN = ["--weights", "hed-bsds500", "--layers", "block1_conv1,block3_conv1", "--filters", "0-7", "--size", "48",
             "--steps", "16"]


# --- the scripts (no Slurm needed) ----------------------------------------------------------------------------


def test_dry_run_prints_the_array_and_the_merge_job_and_submits_nothing(tmp_path):
    proc = run_atlas("slurm", "generate", *DONE_WHEN, "--views", "channel,neuron", "--seed", "3", "--shards", "3",
                     "--partition", "gpu", "--time", "4:00:00", "--gpus-per-task", "1", "--cpus-per-task", "8",
                     "--compare", "atlas-naive", "--out", "A", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    logs = tmp_path / "A" / "logs"
    array = _as_dict(sbatch_directives(_scripts(text)[0]))
    assert array["array"] == "0-2" and array["output"] == f"{logs}/generate-vgg16-%A_%a.log"
    assert {k: array[k] for k in ("partition", "time", "gpus-per-task", "cpus-per-task", "chdir")} == {
        "partition": "gpu", "time": "4:00:00", "gpus-per-task": "1", "cpus-per-task": "8", "chdir": str(tmp_path)}
    task = next(line for line in text.splitlines() if line.startswith("exec "))
    assert task.endswith('--shard "$SLURM_ARRAY_TASK_ID/3"')
    assert ("-m generator generate --weights hed-bsds500 --layers block1_conv1,block3_conv1 --filters 0-7 --views "
            "channel,neuron --size 48 --steps 16 --precision mixed_float16 --seed 3 --out A") in task
    assert "--dependency=afterok:<the array's job id> --kill-on-invalid-dep=yes" in text
    merge_job = text.split("--kill-on-invalid-dep=yes", 1)[1]
    assert "--gpus-per-task" not in merge_job  # the merge, wiring and site need no GPU
    for step in ("generator merge --out A", "generator wiring --model vgg16 --weights hed-bsds500 --out A",
                 "generator site --data A --out site_src --compare atlas-naive"):
        assert step in merge_job
    assert not (tmp_path / "A").exists()


def test_options_travel_quoted_and_cpu_runs_ask_no_gpu(sample_tiles, tmp_path):
    proc = run_atlas("slurm", "examples", "--images", str(sample_tiles), "--weights", "hed-bsds500", "--images-name",
                     "tiles, 96 px", "--device", "cpu", "--shards", "2", "--out", "E", "--no-site", "--dry-run",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--images-name 'tiles, 96 px'" in proc.stdout and "--device cpu" in proc.stdout
    assert "gpus-per-task" not in proc.stdout and "generator site" not in proc.stdout
    assert "generator wiring" not in proc.stdout  # examples: the merge only


@pytest.mark.parametrize("args, message", [
    (["--shards", "17"], "--shards 17: this job is only 16 filters; give --shards 16 or fewer"),
    (["--shards", "2", "--shard", "0/2"], "--shard: atlas slurm gives each task its own shard"),
    (["--shards", "0"], "argument --shards: '0' must be positive"),
    (["--shards", "2", "--layers", "block9_conv1"], "unknown layer 'block9_conv1'"),
])
def test_bad_slurm_requests_are_one_line(tmp_path, args, message):
    proc = run_atlas("slurm", "generate", *DONE_WHEN[:-6], "--filters", "0-7", "--size", "48", *args, "--out", "A",
                     "--dry-run", cwd=tmp_path)
    assert message in error_line(proc)
    assert not (tmp_path / "A").exists()


def test_without_sbatch_it_says_where_to_run(tmp_path):
    line = error_line(run_atlas("slurm", "generate", *DONE_WHEN, "--shards", "2", "--out", "A",
                                env={"PATH": str(tmp_path)}, cwd=tmp_path))
    assert "sbatch not found" in line and "--dry-run" in line and "--shard K/N" in line


def test_make_atlas_with_shards_submits_the_same_steps_through_slurm(sample_tiles, tmp_path):
    """`make atlas SHARDS=N`: the comparison, the atlas, then its examples, each an array and its merge job."""
    proc = subprocess.run(["make", "-s", "atlas", "SHARDS=3", "WEIGHTS=hed-bsds500", f"ATLAS={tmp_path}/atlas",
                           f"IMAGES={sample_tiles}", "SLURM_ARGS=--dry-run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    arrays = [line for line in proc.stdout.splitlines() if line.startswith("exec ")]
    assert len(arrays) == 3 and "--method naive" in arrays[0] and arrays[0].endswith('--shard "$SLURM_ARRAY_TASK_ID/1"')
    assert "--views all" in arrays[1] and arrays[1].endswith('/3"') and "generator examples" in arrays[2]
    assert proc.stdout.count("generator site --data") == 1  # the site once, after the examples
    assert f"generator site --data {tmp_path}/atlas --out site_src --compare {tmp_path}/atlas-naive" in proc.stdout


# --- hostile values: quoted the way sbatch and bash read them, or refused ---------------------------------------

HOSTILE = "sp ace 'q' \"dq\" $HOME `touch PWNED` #hash %p"  # every character a shell or sbatch could misread


def sbatch_directives(script: str) -> list[str]:
    """The options sbatch takes from a script's ``#SBATCH`` lines, read as sbatch reads them
    (``_opt_batch_script`` and ``_get_argument`` of Slurm's src/sbatch/opt.c): directives up to the first
    line that is not a comment; in each, arguments split at white space outside quotes (``"`` or
    ``'``), a backslash keeping the next character, an unquoted ``#`` ending the line."""
    options = []
    for line in script.split("\n"):
        if not line.startswith("#SBATCH"):
            if line.strip() and not line.lstrip().startswith("#"):
                break  # the first command: sbatch reads no directive after it
            continue
        rest, i = line[len("#SBATCH"):], 0
        while i < len(rest):
            while i < len(rest) and rest[i].isspace():
                i += 1
            if i == len(rest):
                break
            argument, quote, escaped = "", None, False
            while i < len(rest) and (quote or not rest[i].isspace()):
                c = rest[i]
                i += 1
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                    continue
                elif quote:
                    if c == quote:
                        quote = None
                        continue
                elif c in "\"'":
                    quote = c
                    continue
                elif c == "#":
                    i = len(rest)
                    break
                argument += c
            assert quote is None, f"sbatch: unmatched {quote} in {line!r}"
            if argument:
                options.append(argument)
    return options


def _as_dict(options: list[str]) -> dict[str, str]:
    return dict(option[2:].split("=", 1) for option in options)


def _scripts(stdout: str) -> list[str]:
    return ["#!/bin/bash" + part for part in stdout.split("#!/bin/bash")[1:]]


def test_the_directive_parser_reads_as_sbatch_does():
    # as in sbatch, a backslash does not keep a space (hence the quotes), and nothing after a command is read
    assert sbatch_directives('#SBATCH --a="x y" --b=\'#\'z # c\n#SBATCH --d=e\\ f --h="\\"\\\\"\necho\n#SBATCH --g=1') == [
        "--a=x y", "--b=#z", "--d=e", "f", '--h="\\']


def test_hostile_paths_reach_sbatch_and_the_shell_as_given(tmp_path):
    """A working folder and --out holding spaces, quotes, $, backticks, # and %: each #SBATCH value is
    what was given (parsed as sbatch parses it), no directive after them is lost, and the shell runs
    the tasks and the merge job with exactly the arguments given, running nothing else."""
    where = tmp_path / f"work {HOSTILE}"
    where.mkdir()
    out = f"atlas {HOSTILE}"
    proc = run_atlas("slurm", "generate", *DONE_WHEN, "--shards", "2", "--partition", "p q#r", "--time", "1:00:00",
                     "--gpus-per-task", "1", "--cpus-per-task", "2", "--compare", f"naive {HOSTILE}", "--out", out,
                     "--dry-run", cwd=where)
    assert proc.returncode == 0, proc.stderr
    array, final = _scripts(proc.stdout)
    logs = f"{where}/{out}/logs".replace("%", "%%")
    got = _as_dict(sbatch_directives(array))
    assert got == {"job-name": got["job-name"], "array": "0-1", "output": f"{logs}/generate-vgg16-%A_%a.log",
                   "ntasks": "1", "chdir": str(where), "partition": "p q#r", "time": "1:00:00",
                   "cpus-per-task": "2", "gpus-per-task": "1"}
    got = _as_dict(sbatch_directives(final))
    assert got["output"] == f"{logs}/generate-vgg16-merge-%j.log" and got["chdir"] == str(where)
    assert got["time"] == "1:00:00" and "gpus-per-task" not in got
    # the shell: each script run by bash with a Python that writes down the arguments it was given
    fake = tmp_path / f"bin {HOSTILE}" / "python"
    fake.parent.mkdir()
    calls = tmp_path / "calls.jsonl"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + "
                    "'\\n')\n")
    fake.chmod(0o755)
    for script in (array, final):
        text = script.replace(shlex.quote(sys.executable), shlex.quote(str(fake)))
        assert shlex.quote(str(fake)) in text
        ran = subprocess.run(["bash", "-c", text], cwd=where, env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"},
                             capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert argvs[0][:3] == ["-m", "generator", "generate"] and argvs[0][-4:] == ["--out", out, "--shard", "1/2"]
    assert argvs[1] == ["-m", "generator", "merge", "--out", out]
    assert argvs[2][2] == "wiring" and argvs[2][-2:] == ["--out", out]
    assert argvs[3] == ["-m", "generator", "site", "--data", out, "--out", "site_src", "--compare", f"naive {HOSTILE}"]
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("args, named", [
    (["--out", "A\ntouch PWNED\n#"], "--out 'A\\ntouch PWNED\\n#': holds a line break"),
    (["--partition", "gpu\n#SBATCH --time=1"], "--partition 'gpu\\n#SBATCH --time=1': holds a line break"),
    (["--time", "1:00\r"], "--time '1:00\\r': holds a line break"),
    (["--compare", "naive\x1b[2J"], "--compare 'naive\\x1b[2J': holds a control character ('\\x1b')"),
    (["--seed", "3", "--filters", "0-3\n"], None),  # refused by the option itself
    (["--out", "back\\slash"], "--out 'back\\\\slash': a backslash in the log folder's path"),
])
def test_values_a_script_cannot_carry_are_refused_in_one_line(tmp_path, args, named):
    proc = run_atlas("slurm", "generate", *DONE_WHEN[:-2], "--shards", "2", *args, "--dry-run", cwd=tmp_path)
    line = error_line(proc)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "#!/bin/bash" not in proc.stdout
    if named:
        assert named in line, line
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "A").exists()


def test_a_working_folder_with_a_line_break_is_refused(tmp_path):
    where = tmp_path / "a\nb"
    where.mkdir()
    line = error_line(run_atlas("slurm", "generate", *DONE_WHEN, "--shards", "2", "--dry-run", cwd=where))
    assert line.endswith("holds a line break, which a Slurm batch script cannot carry; run atlas slurm from a folder "
                         "whose path has none") and f"the working folder {str(where)!r}" in line


def test_precision_auto_is_fixed_at_submission_for_every_task(tmp_path):
    """`auto` would be bf16 on one node, fp16 on another, fp32 on a CPU node, and the precision is part
    of the settings every shard shares: the tasks get one precision, written into their command."""
    def task(*args):
        proc = run_atlas("slurm", "generate", *DONE_WHEN, "--shards", "2", *args, "--dry-run", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return next(line for line in proc.stdout.splitlines() if line.startswith("exec ")), proc.stderr
    line, said = task("--gpus-per-task", "1")
    assert " --precision mixed_float16 " in line and "every task runs at mixed_float16" in said
    line, said = task("--device", "cpu")
    assert " --precision float32 " in line and "every task runs at float32" in said
    line, said = task("--gpus-per-task", "1", "--precision", "mixed_bfloat16")
    assert " --precision mixed_bfloat16 " in line and not said.strip()


# --- a real one-node Slurm ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install() -> str | None:
    """Debian's Slurm and munge where missing; None when they are there, else why not."""
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Slurm (slurmctld, slurmd, slurm-client, munge) is not installed and this is not root with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not all(shutil.which(d) for d in DAEMONS):
        return f"apt-get could not install Slurm ({(proc.stderr.strip().splitlines() or ['?'])[-1]})"
    return None


SLURM_CONF = """\
ClusterName=atlastest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={run}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class OneNodeSlurm:
    """munged (as the munge user), slurmctld and slurmd (as root) for localhost with 2 CPUs, every file
    under one temporary folder, on ports of their own: nothing of a Slurm already on the machine is touched."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="atlas-slurm-"))
        self.root.chmod(0o755)  # the munge user must reach its socket
        self.processes: list[subprocess.Popen] = []
        self.env = {"SLURM_CONF": str(self.root / "slurm.conf")}

    def start(self) -> None:
        run, key_dir = self.root / "run", self.root / "munge"
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir()
        for folder, mode in ((run, 0o755), (key_dir, 0o700)):
            folder.mkdir()
            shutil.chown(folder, "munge", "munge")
            folder.chmod(mode)
        key = key_dir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        self._spawn(["munged", "-F", f"--socket={run}/munge.socket", f"--key-file={key}",
                     f"--log-file={key_dir}/munged.log", f"--pid-file={run}/munged.pid",
                     f"--seed-file={key_dir}/munged.seed"], user="munge")
        self._until(lambda: (run / "munge.socket").exists(), "munged made no socket")
        host = socket.gethostname().split(".")[0]
        (self.root / "slurm.conf").write_text(SLURM_CONF.format(
            host=host, root=self.root, run=run, ctld_port=_free_port(), d_port=_free_port()))
        conf = str(self.root / "slurm.conf")
        self._spawn(["slurmctld", "-D", "-f", conf])
        self._spawn(["slurmd", "-D", "-f", conf, "-N", host])
        self._until(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T").stdout, "the node never became idle")

    def _spawn(self, args: list[str], user: str | None = None) -> None:
        log = open(self.root / "log" / f"{Path(args[0]).name}.out", "w")
        self.processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, user=user,
                                               group=user, extra_groups=[] if user else None))

    def _until(self, ready, what: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.2)
        logs = " | ".join(p.read_text()[-300:] for p in (self.root / "log").glob("*"))
        raise RuntimeError(f"one-node Slurm: {what}: {logs}")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **self.env})

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm():
    """A one-node Slurm for the session: ``{"SLURM_CONF": ...}`` for the commands that use it."""
    why = _install()
    if why:
        pytest.skip(f"Slurm tests: {why}")
    cluster = OneNodeSlurm()
    try:
        cluster.start()
    except (RuntimeError, OSError) as exc:
        cluster.stop()
        pytest.skip(f"Slurm tests: a one-node Slurm would not start here ({str(exc)[:300]})")
    yield cluster
    cluster.stop()


def project(tmp_path: Path) -> Path:
    """A copy of what mkdocs reads, so that the merge job's site build stays out of the working tree."""
    from generator.site import stage_project

    return stage_project(tmp_path)


def test_a_two_task_array_and_a_job_after_it_run(slurm, tmp_path):
    script = tmp_path / "array.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --array=0-1\n#SBATCH --output={tmp_path}/%a.log\necho task "
                      "$SLURM_ARRAY_TASK_ID\n")
    array = slurm.run("sbatch", "--parsable", str(script)).stdout.strip()
    after = tmp_path / "after.sh"
    after.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/after.log\necho after\n")
    final = slurm.run("sbatch", "--parsable", f"--dependency=afterok:{array}", str(after)).stdout.strip()
    assert array and final
    end = time.monotonic() + 120
    while slurm.run("squeue", "-h", "-j", f"{array},{final}").stdout.strip() and time.monotonic() < end:
        time.sleep(0.2)
    assert [(tmp_path / f"{k}.log").read_text() for k in (0, 1)] == ["task 0\n", "task 1\n"]
    assert (tmp_path / "after.log").read_text() == "after\n"


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory) -> Path:
    """The done-when job rendered by one `atlas generate`, the reference the array must equal."""
    out = tmp_path_factory.mktemp("one") / "B"
    proc = run_atlas("generate", *DONE_WHEN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_an_array_of_3_shards_gives_the_one_machine_atlas_and_its_site(slurm, one_machine, tmp_path):
    where = project(tmp_path)
    proc = run_atlas("slurm", "generate", *DONE_WHEN, "--shards", "3", "--out", "A", "--wait", env=slurm.env,
                     cwd=where)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"submitted shards 0-2 of 3 as job array \d+ and the merge as job \d+", proc.stdout)
    assert "done:" in proc.stdout and "site built" in proc.stdout
    atlas = where / "A"
    assert tree_bytes(atlas / "vgg16", "*.png") == tree_bytes(one_machine / "vgg16", "*.png")
    merged = {k: v for k, v in tree_json(atlas / "vgg16").items() if not k.endswith("wiring.json")}
    assert merged == tree_json(one_machine / "vgg16")
    assert not list((atlas / "vgg16/.shards").glob("*.json"))
    logs = sorted(p.name for p in (atlas / "logs").glob("*.log"))
    assert len(logs) == 4 and sum("-merge-" in name for name in logs) == 1, logs  # one log per task, one merge
    assert (where / "site/vgg16/block3_conv1/7/index.html").exists()  # mkdocs build --strict ran in the merge job
    assert "Documentation built" in next((atlas / "logs").glob("*-merge-*.log")).read_text()


@pytest.mark.slow
def test_an_examples_array_gives_the_one_machine_top_k(slurm, sample_tiles, tmp_path):
    args = ["--images", str(sample_tiles), "--weights", "hed-bsds500", "--layers", "block1_conv2,block3_conv1",
            "--top", "4", "--size", "96"]
    one = tmp_path / "one"
    proc = run_atlas("examples", *args, "--out", str(one))
    assert proc.returncode == 0, proc.stderr
    where = project(tmp_path)
    proc = run_atlas("slurm", "examples", *args, "--shards", "2", "--out", "E", "--no-site", "--wait",
                     env=slurm.env, cwd=where)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree_bytes(where / "E/vgg16", "*.examples.*") == tree_bytes(one / "vgg16", "*.examples.*")
    assert tree_json(where / "E/vgg16")["manifest.json"] == tree_json(one / "vgg16")["manifest.json"]


@pytest.mark.slow
def test_a_cancelled_task_is_resubmitted_alone_and_redoes_nothing(slurm, tmp_path):
    where = project(tmp_path)
    args = ["slurm", "generate", "--weights", "random", "--layers", "block3_conv1", "--filters", "0-15", "--size",
            "48", "--steps", "48", "--batch", "2", "--shards", "2", "--out", "C", "--no-site", "--wait"]
    first = subprocess.Popen([sys.executable, "-m", "generator", *args], cwd=where, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **slurm.env})
    array = re.search(r"job array (\d+)", first.stdout.readline()).group(1)
    layer = where / "C/vgg16/block3_conv1"
    end = time.monotonic() + 300
    while not (layer / "0008.json").exists() and time.monotonic() < end:  # shard 1 (filters 8-15) has begun
        time.sleep(0.05)
    assert slurm.run("scancel", f"{array}_1").returncode == 0
    _, stderr = first.communicate(timeout=300)
    assert first.returncode != 0 and "Traceback" not in stderr
    assert re.search(r"did not complete \(1 CANCELLED; log .*generate-vgg16-\d+_1\.log\)", stderr.strip()), stderr
    done = sorted(layer.glob("00*.json"))  # a filter is done once its JSON is written (after its picture)
    assert 9 <= len(done) < 16, len(done)  # shard 0 whole, shard 1 cut short
    stamp = lambda paths: {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}  # noqa: E731
    before = stamp(done + [p.with_suffix(".png") for p in done])
    again = run_atlas(*args, env=slurm.env, cwd=where)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitted shards 1 of 2" in again.stdout and "shards 0 had finished and are kept" in again.stdout
    assert stamp(layer / name for name in before) == before  # nothing done before was written again
    assert len(list(layer.glob("00*.png"))) == 16
    resumed = sorted((where / "C/logs").glob("generate-vgg16-*_1.log"), key=lambda p: p.stat().st_mtime)[-1]
    assert f"{16 - len(done)} filter views rendered, {len(done) - 8} already done" in resumed.read_text()
    rows = json.loads((layer / "layer.json").read_text())["rows"]
    assert [r["filter"] for r in rows] == list(range(16))


def test_a_model_files_tasks_and_merge_job_read_the_file(colour_files, tmp_path):
    """The merge job runs only what the user's own command line gave: the custom objects it named reach
    the tasks and the wiring; the merge itself takes nothing but the atlas folder."""
    custom = tmp_path / "my layers.py"
    custom.write_text("# the user's own custom objects (none needed)\n")
    proc = run_atlas("slurm", "generate", "--model", str(colour_files["keras"]), "--name", "my_net", "--steps", "4",
                     "--custom-objects", str(custom), "--shards", "2", "--out", "A", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    task = next(line for line in text.splitlines() if line.startswith("exec "))
    assert f"-m generator generate --model {colour_files['keras']} " in task and " --name my_net " in task
    assert "generate-my_net-%A_%a.log" in text
    merge_job = text.split("--kill-on-invalid-dep=yes", 1)[1]
    wiring = next(line for line in merge_job.splitlines() if " wiring " in line)
    assert f"generator wiring --model {colour_files['keras']} " in wiring and " --name my_net " in wiring
    assert f"--custom-objects {shlex.quote(str(custom))}" in wiring and f"--custom-objects {shlex.quote(str(custom))}" in task
    steps = [shlex.split(line) for line in merge_job.splitlines() if " -m generator " in line]
    assert steps[0][1:] == ["-m", "generator", "merge", "--out", "A"]


@pytest.mark.slow
def test_hostile_paths_on_a_real_slurm(slurm, tmp_path):
    """A working folder and --out holding spaces, quotes, $, backticks, # and %, through the real sbatch:
    the tasks and the merge job run in that folder, log where asked, and the atlas is merged; a value
    with a line break is refused before anything is submitted."""
    where = tmp_path / f"work {HOSTILE}"
    where.mkdir()
    out = f"atlas {HOSTILE}"
    args = ["slurm", "generate", "--weights", "random", "--layers", "block1_conv1", "--filters", "0-3", "--size", "32",
            "--steps", "2", "--shards", "2", "--time", "0:20:00", "--no-site"]
    refused = run_atlas(*args, "--out", "A\ntouch PWNED\n#", "--wait", env=slurm.env, cwd=where)
    assert "holds a line break" in error_line(refused)
    assert not slurm.run("squeue", "-h").stdout.strip()  # nothing submitted
    proc = run_atlas(*args, "--out", out, "--wait", env=slurm.env, cwd=where)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    atlas = where / out
    assert len(list((atlas / "vgg16/block1_conv1").glob("000?.png"))) == 4
    assert [r["filter"] for r in json.loads((atlas / "vgg16/block1_conv1/layer.json").read_text())["rows"]] == [0, 1, 2, 3]
    logs = sorted(p.name for p in (atlas / "logs").glob("*.log"))
    assert len(logs) == 3 and sum("-merge-" in name for name in logs) == 1, logs
    assert list((atlas / "vgg16").rglob("wiring.json"))  # the merge job's wiring ran, in that folder
    assert not list(tmp_path.rglob("PWNED"))


# --- publishing: the logs keep their local paths, and stay home ----------------------------------------------


def _readme_archive_command() -> str:
    """The archive command README's Publish section documents for a release."""
    text = (ROOT / "README.md").read_text()
    publish = text.split("## Publish", 1)[1].split("\n## ", 1)[0]
    return re.search(r"`(tar\s+czf\s[^`]+)`", publish).group(1).replace("\n", " ")


@pytest.mark.slow
def test_publishing_leaves_out_logs_locks_and_shard_records(tmp_path):
    """The Slurm logs and scripts name the working folder and the Python, a lock file the command line,
    a shard record the host and folders: `atlas site` and the archive README documents leave them out,
    and nothing they write names this machine's folders or its user's home."""
    import getpass

    where = tmp_path / f"home-{getpass.getuser()}" / "project"
    where.mkdir(parents=True)
    tiny = ["--weights", "random", "--layers", "block1_conv1", "--filters", "0-1", "--size", "32", "--steps", "2"]
    assert run_atlas("generate", *tiny, "--out", "atlas", cwd=where).returncode == 0
    logs = where / "atlas/logs"
    logs.mkdir()
    (logs / "generate-vgg16.sbatch").write_text(f'#SBATCH --chdir="{where}"\nexec {sys.executable} -m generator\n')
    (logs / "generate-vgg16-7_0.log").write_text(f"{where}/atlas written by {getpass.getuser()}\n")
    (where / "atlas/vgg16/.shards").mkdir(exist_ok=True)
    (where / "atlas/vgg16/.shards/examples-0-of-2.lock").write_text(f"pid 1: atlas examples --images {where}/x")
    (where / "atlas/vgg16/.lock").write_text(f"pid 1: atlas generate --out {where}/atlas")  # as a run holding it
    shutil.copytree(where / "atlas", where / "atlas-naive")
    site = run_atlas("site", "--data", "atlas", "--out", "site_src", cwd=where)
    assert site.returncode == 0, site.stderr
    archive = subprocess.run(_readme_archive_command(), shell=True, cwd=where, capture_output=True, text=True)
    assert archive.returncode == 0, archive.stderr
    members = subprocess.run(["tar", "tzf", "atlas.tar.gz"], cwd=where, capture_output=True, text=True).stdout.split()
    assert "atlas/vgg16/manifest.json" in members and "atlas-naive/vgg16/manifest.json" in members
    assert not [m for m in members if "logs" in m.split("/") or any(p.startswith(".") for p in m.split("/"))]
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "xzf", where / "atlas.tar.gz"], cwd=unpacked, check=True)
    published = [p for folder in (where / "site_src", unpacked) for p in folder.rglob("*") if p.is_file()]
    assert len(published) > 10
    home = str(Path.home())
    for path in published:
        data = path.read_bytes()
        assert str(tmp_path).encode() not in data, path
        assert home == "/" or f"{home}/".encode() not in data, path

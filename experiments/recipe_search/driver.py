"""Run every line of a runs file (name + explore.py flags) as its own GPU process; stop at a deadline;
gather the per-epoch rows into $OUT/results.jsonl."""
import os, shlex, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
runs_file, deadline = sys.argv[1], float(sys.argv[2])
out = os.environ.get("OUT", os.path.join(here, "out")); os.makedirs(out, exist_ok=True)  # the device tool's $OUT
logs = os.path.join(out, "logs"); os.makedirs(logs, exist_ok=True)
sys.path.insert(0, here)
t0 = time.time()
import explore; explore.decode_cifar()
print(f"decoded in {time.time() - t0:.0f}s", flush=True)
procs = []
for line in open(os.path.join(here, runs_file)):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, args = line.split(None, 1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs.append((name, subprocess.Popen([sys.executable, os.path.join(here, "explore.py"), "--name", name, "--out", f"{logs}/{name}.jsonl", *shlex.split(args)],
                                         stdout=open(f"{logs}/{name}.log", "w"), stderr=subprocess.STDOUT, env=env)))
while time.time() - t0 < deadline and any(p.poll() is None for _, p in procs):
    time.sleep(10)
    done = sum(p.poll() is not None for _, p in procs)
    print(f"t={time.time() - t0:.0f}s done {done}/{len(procs)}", flush=True)
for name, p in procs:
    if p.poll() is None:
        p.kill()
with open(f"{out}/results.jsonl", "w") as f:
    for name, p in procs:
        path = f"{logs}/{name}.jsonl"
        rows = open(path).read() if os.path.exists(path) else ""
        f.write(rows)
        last = [l for l in rows.splitlines() if l][-1:] 
        tail = open(f"{logs}/{name}.log").read()[-300:] if p.returncode not in (0, None) else ""
        print(name, p.returncode, (last[0][:60] + " ... " + last[0][-60:]) if last else "no rows", tail)

#!/usr/bin/env python3
"""Time per question for the most expensive questions a client can ask, end to end: a real etcd
and the srvd binary on loopback, one question at a time over UDP (EDNS 1232) and TCP.

usage: benches/load/hostile_questions.py target/release/srvd
       WEB=10 ONLY_WEB=1 benches/load/hostile_questions.py target/release/srvd

Data (written through etcd's JSON gateway in transactions): 10,000 SRV keys under
_http._tcp.big10k.service.local, 5,000 under _http._tcp.big5k, and a web of WEB (default 9)
names that all alias each other (each has one address and a key per other name, 81 keys for 9).
Prints the time per question with the response's RCODE, TC and counts, the time of a cheap SOA
question sent while an SRV over 10,000 keys is being answered, and srvd's peak resident memory.
Needs etcd on PATH (scripts/install-deps). Speed is printed, never asserted."""
import atexit, base64, json, os, random, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

srvd = sys.argv[1]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

tmp = tempfile.mkdtemp()
cport, pport = free_port(), free_port()
etcd = subprocess.Popen(["etcd", "--name", "h", "--data-dir", tmp + "/d",
    "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
    "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
    "--initial-cluster", f"h=http://127.0.0.1:{pport}", "--max-txn-ops", "20000", "--max-request-bytes", "33554432",
    "--log-level", "error", "--logger", "zap"], stderr=subprocess.DEVNULL)
children = [etcd]
# Every process this script starts is stopped by its PID when it exits, whatever happens.
atexit.register(lambda: [c.kill() for c in children if c.poll() is None])
url = f"http://127.0.0.1:{cport}"
b64 = lambda s: base64.b64encode(s.encode()).decode()
def post(path, body):
    for _ in range(100):
        try:
            r = urllib.request.urlopen(urllib.request.Request(url + path, json.dumps(body).encode()), timeout=30)
            return json.load(r)
        except Exception:
            time.sleep(0.1)
    raise SystemExit("etcd not answering")
def put_many(kvs):
    for i in range(0, len(kvs), 5000):
        post("/v3/kv/txn", {"success": [{"requestPut": {"key": b64(k), "value": b64(v)}} for k, v in kvs[i:i+5000]]})

kvs = []
for i in range(10000):
    kvs.append((f"/skydns/local/service/big10k/_tcp/_http/i{i}", json.dumps({"host": f"10.{i//65536}.{i//256%256}.{i%256}", "port": 8080, "weight": 1 + i % 50})))
for i in range(5000):
    kvs.append((f"/skydns/local/service/big5k/_tcp/_http/i{i}", json.dumps({"host": f"10.9.{i//256%256}.{i%256}", "port": 8080})))
web = [f"w{j}" for j in range(int(os.environ.get("WEB", "9")))]
for n, a in enumerate(web):
    kvs.append((f"/skydns/local/service/{a}/addr", json.dumps({"host": f"10.200.0.{n}"})))
    for b in web:
        if a != b:
            kvs.append((f"/skydns/local/service/{a}/{b}", json.dumps({"host": f"{b}.service.local"})))
put_many(kvs)

dport = free_port()
env = dict(os.environ, RUST_LOG="warn")
srv = subprocess.Popen([srvd, "serve", "--listen", f"127.0.0.1:{dport}", "--etcd", url, "--zones-dir", os.environ.get("ZONES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/data/zones"))] ,
                       stderr=open(tmp + "/srvd.log", "w"), env=env)
children.append(srv)

def q(name, qtype, edns=True, rid=None):
    rid = rid if rid is not None else random.randrange(65536)
    msg = struct.pack(">HHHHHH", rid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.rstrip(".").split("."):
        msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return msg

def udp(name, qtype, timeout=60):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    t = time.perf_counter(); s.sendto(q(name, qtype), ("127.0.0.1", dport)); data = s.recv(65535)
    return time.perf_counter() - t, data

def tcp(name, qtype, timeout=60):
    s = socket.create_connection(("127.0.0.1", dport), timeout=timeout)
    m = q(name, qtype); t = time.perf_counter(); s.sendall(struct.pack(">H", len(m)) + m)
    n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]; data = b""
    while len(data) < n: data += s.recv(n - len(data))
    return time.perf_counter() - t, data

A, SRV, SOA = 1, 33, 6
for _ in range(300):
    try:
        el, d = udp("service.local", SOA, timeout=1)
        if d[3] & 0xf == 0: break
    except Exception: pass
    time.sleep(0.1)
else:
    raise SystemExit("srvd not serving")
def flags(d): return f"rcode={d[3]&0xf} tc={(d[2]>>1)&1} an={struct.unpack('>H', d[6:8])[0]} ar={struct.unpack('>H', d[10:12])[0]} bytes={len(d)}"
cases = [] if os.environ.get("ONLY_WEB") else [("_http._tcp.big5k.service.local", SRV), ("_http._tcp.big10k.service.local", SRV), ("service.local", A), ("any.service.local", A), ("service.local", SRV)]
cases.append(("w0.service.local", A))
for name, qt in cases:
    for tr in (udp, tcp):
        el, d = tr(name, qt)
        print(f"{tr.__name__} {name} {qt}: {el*1000:.1f} ms {flags(d)}", flush=True)
if os.environ.get("ONLY_WEB"):
    print("".join(l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmHWM")).strip())
    srv.kill(); srv.wait(); etcd.terminate(); etcd.wait(); shutil.rmtree(tmp); sys.exit()
# A cheap question while an expensive one is being answered.
import threading
res = {}
def slow(): res["slow"] = udp("_http._tcp.big10k.service.local", SRV)[0]
th = threading.Thread(target=slow); th.start(); time.sleep(0.005)
res["soa"] = udp("service.local", SOA)[0]; th.join()
print(f"SOA sent 5 ms after an SRV(10k) question: {res['soa']*1000:.1f} ms (the SRV took {res['slow']*1000:.1f} ms)")
print("".join(l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmHWM")).strip())
srv.kill(); srv.wait(); etcd.terminate(); etcd.wait()
shutil.rmtree(tmp)

"""Several access keys (issue 16): a keys file of read-write / read-only keys, optionally
limited to buckets (`name` or `prefix*`). Every write operation is refused (403 AccessDenied)
for a read-only key and outside a key's buckets, and works inside them; the GET/HEAD fast path
refuses exactly as s3s does (compared with a `--no-fast-path` server); ListBuckets shows a
scoped key only its buckets; the root key keeps full access; unknown keys get
InvalidAccessKeyId.
"""

import http.client
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

import baleproc
import sigv4
from conftest import bale, boto3_client

KEYS = {
    # access key: (secret, access, buckets)
    "rwall": ("rwall-secret-1", "read-write", None),
    "roall": ("roall-secret-1", "read-only", None),
    "rwteam": ("rwteam-secret-1", "read-write", ["team-*", "shared"]),
    "roshared": ("roshared-secret", "read-only", ["shared"]),
}
BUCKETS = ["shared", "team-a", "other"]
BODY = b"0123456789" * 50


def keys_toml(keys):
    out = []
    for ak, (sk, access, buckets) in keys.items():
        out.append(f'[[keys]]\naccess_key = "{ak}"\nsecret_key = "{sk}"\naccess = "{access}"\n')
        if buckets is not None:
            out.append("buckets = [" + ", ".join(f'"{b}"' for b in buckets) + "]\n")
    return "".join(out)


class Srv:
    def __init__(self, proc):
        self.proc = proc
        self.endpoint = proc.endpoint

    def s3(self, ak=None):
        if ak is None:
            return boto3_client(self.endpoint, baleproc.ACCESS_KEY, baleproc.SECRET_KEY)
        return boto3_client(self.endpoint, ak, KEYS[ak][0])

    def raw(self, ak):
        sk = KEYS[ak][0] if ak in KEYS else "whatever-secret"
        return sigv4.Client("127.0.0.1", self.proc.port, sigv4.Signer(ak, sk))


def start(tmp_path_factory, extra=()):
    d = tmp_path_factory.mktemp("keys")
    kf = d / "keys.toml"
    kf.write_text(keys_toml(KEYS))
    b = baleproc.Bale(cores=2, extra_args=["--keys-file", str(kf), *extra])
    b.start()
    root = boto3_client(b.endpoint, baleproc.ACCESS_KEY, baleproc.SECRET_KEY)
    for name in BUCKETS:
        root.create_bucket(Bucket=name)
        root.put_object(Bucket=name, Key="obj", Body=BODY)
    return b


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    b = start(tmp_path_factory)
    yield Srv(b)
    assert b.stop() == 0
    assert "panicked" not in b.log_tail(100000)
    b.cleanup()


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    b = start(tmp_path_factory, ["--no-fast-path"])
    yield Srv(b)
    b.stop()
    b.cleanup()


def denied(fn, code="AccessDenied", status=403):
    with pytest.raises(ClientError) as e:
        fn()
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    assert err["Error"]["Code"] == code, err


def exists(srv, bucket, key):
    try:
        srv.s3().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False


# ---- reads ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ak,readable", [
    ("rwall", BUCKETS), ("roall", BUCKETS), ("rwteam", ["shared", "team-a"]),
    ("roshared", ["shared"]),
])
def test_reads_follow_the_scope(srv, slow, ak, readable):
    for s in (srv, slow):
        c = s.s3(ak)
        for b in BUCKETS:
            if b in readable:
                assert c.get_object(Bucket=b, Key="obj")["Body"].read() == BODY
                assert c.head_object(Bucket=b, Key="obj")["ContentLength"] == len(BODY)
                assert [o["Key"] for o in c.list_objects_v2(Bucket=b)["Contents"]] == ["obj"]
                c.head_bucket(Bucket=b)
            else:
                denied(lambda: c.get_object(Bucket=b, Key="obj"))
                denied(lambda: c.head_object(Bucket=b, Key="obj"), code="403")
                denied(lambda: c.list_objects_v2(Bucket=b))
                denied(lambda: c.get_object(Bucket=b, Key="missing"))


def test_fast_path_refuses_as_s3s_does(srv, slow):
    """A scoped key reading outside its scope: the same 403 from both servers, byte for byte
    but for the request id, which each carries in a header and in the body."""
    answers = []
    for s in (srv, slow):
        for method in ("GET", "HEAD"):
            r = s.raw("roshared").request(method, "/other/obj")
            assert r.status == 403, r
            rid = r.headers.get("x-amz-request-id")
            assert rid and len(rid) == 16, r.headers
            if method == "GET":
                assert r.code() == "AccessDenied", r
                assert f"<RequestId>{rid}</RequestId>".encode() in r.body
            body = r.body.replace(rid.encode(), b"ID")
            hdrs = {k: v for k, v in r.headers.items() if k not in ("date", "x-amz-request-id")}
            answers.append((method, r.status, hdrs, body))
    assert answers[:2] == answers[2:]
    # In scope, the fast path serves it.
    r = srv.raw("roshared").request("GET", "/shared/obj")
    assert r.status == 200 and r.body == BODY


def test_list_buckets_shows_only_the_keys_buckets(srv):
    def names(ak):
        return sorted(b["Name"] for b in srv.s3(ak).list_buckets()["Buckets"])

    assert names(None) == sorted(BUCKETS)
    assert names("roall") == sorted(BUCKETS)
    assert names("rwteam") == ["shared", "team-a"]
    assert names("roshared") == ["shared"]


def test_unknown_key_is_invalid_access_key_id(srv):
    for method, path in (("GET", "/shared/obj"), ("PUT", "/shared/new"), ("GET", "/")):
        r = srv.raw("nosuchkey").request(method, path)
        assert r.status == 403 and r.code() == "InvalidAccessKeyId", r
    # A known key with a wrong secret: SignatureDoesNotMatch.
    c = boto3_client(srv.endpoint, "roall", "not-the-secret")
    denied(lambda: c.get_object(Bucket="shared", Key="obj"), code="SignatureDoesNotMatch")


# ---- every write operation ------------------------------------------------------------------

def write_ops(srv, c, bucket, tag):
    """(name, call) for every write operation against `bucket`, through client `c`; each
    call is the operation alone (uploads it needs are created by the root key)."""
    root = srv.s3()
    key = f"w-{tag}-{uuid.uuid4().hex[:8]}"

    def upload():
        return root.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def upload_part():
        uid = upload()
        try:
            c.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=BODY)
        finally:
            root.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)

    def upload_part_copy():
        uid = upload()
        try:
            c.upload_part_copy(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1,
                               CopySource={"Bucket": "shared", "Key": "obj"})
        finally:
            root.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)

    def complete():
        uid = upload()
        etag = root.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1,
                                Body=BODY)["ETag"]
        try:
            c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": etag}]})
        except ClientError:
            root.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
            raise
        root.delete_object(Bucket=bucket, Key=key)

    def abort():
        uid = upload()
        try:
            c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
        except ClientError:
            root.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
            raise

    def deleting(call):
        root.put_object(Bucket=bucket, Key=key, Body=b"x")
        try:
            call()
        except ClientError:
            assert exists(srv, bucket, key), "a refused delete removed the object"
            root.delete_object(Bucket=bucket, Key=key)
            raise
        assert not exists(srv, bucket, key)

    def delete_object():
        deleting(lambda: c.delete_object(Bucket=bucket, Key=key))

    def delete_objects():
        def call():
            r = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]})
            assert not r.get("Errors"), r
        deleting(call)

    def put_object():
        c.put_object(Bucket=bucket, Key=key, Body=BODY)
        assert root.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY
        root.delete_object(Bucket=bucket, Key=key)

    def copy_object():
        c.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": "shared", "Key": "obj"})
        assert root.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY
        root.delete_object(Bucket=bucket, Key=key)

    def presigned_put():
        url = c.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key})
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request("PUT", f"{u.path}?{u.query}", body=BODY)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status != 200:
            code = body.split(b"<Code>")[1].split(b"</Code>")[0].decode()
            raise ClientError({"Error": {"Code": code},
                               "ResponseMetadata": {"HTTPStatusCode": r.status}}, "PresignedPut")
        root.delete_object(Bucket=bucket, Key=key)

    return [
        ("PutObject", put_object), ("CopyObject", copy_object),
        ("DeleteObject", delete_object), ("DeleteObjects", delete_objects),
        ("CreateMultipartUpload", lambda: root.abort_multipart_upload(
            Bucket=bucket, Key=key,
            UploadId=c.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])),
        ("UploadPart", upload_part), ("UploadPartCopy", upload_part_copy),
        ("CompleteMultipartUpload", complete), ("AbortMultipartUpload", abort),
        ("PresignedPut", presigned_put),
    ]


OPS = ["PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateMultipartUpload",
       "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload",
       "PresignedPut"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("ak,bucket", [("roall", "shared"), ("roshared", "shared"),
                                       ("rwteam", "other")])
def test_write_refused(srv, ak, bucket, op):
    c = srv.s3(ak)
    before = sorted(o["Key"] for o in srv.s3().list_objects_v2(Bucket=bucket).get("Contents", []))
    ops = dict(write_ops(srv, c, bucket, ak))
    assert sorted(ops) == sorted(OPS)
    denied(ops[op])
    after = sorted(o["Key"] for o in srv.s3().list_objects_v2(Bucket=bucket).get("Contents", []))
    assert before == after
    assert srv.s3().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("ak,bucket", [("rwall", "other"), ("rwteam", "team-a"),
                                       (None, "other")])
def test_write_allowed(srv, ak, bucket, op):
    fn = dict(write_ops(srv, srv.s3(ak), bucket, ak or "root"))[op]
    fn()


def test_copy_needs_read_scope_on_the_source(srv):
    c = srv.s3("rwteam")
    denied(lambda: c.copy_object(Bucket="team-a", Key="stolen",
                                 CopySource={"Bucket": "other", "Key": "obj"}))
    assert not exists(srv, "team-a", "stolen")
    uid = srv.s3().create_multipart_upload(Bucket="team-a", Key="stolen")["UploadId"]
    try:
        denied(lambda: c.upload_part_copy(Bucket="team-a", Key="stolen", UploadId=uid,
                                          PartNumber=1,
                                          CopySource={"Bucket": "other", "Key": "obj"}))
    finally:
        srv.s3().abort_multipart_upload(Bucket="team-a", Key="stolen", UploadId=uid)


def test_bucket_create_and_delete(srv):
    for ak, name in (("roall", "team-ro"), ("roshared", "shared-2"), ("rwteam", "elsewhere")):
        denied(lambda: srv.s3(ak).create_bucket(Bucket=name))
        assert name not in [b["Name"] for b in srv.s3().list_buckets()["Buckets"]]
    c = srv.s3("rwteam")
    c.create_bucket(Bucket="team-new")
    assert "team-new" in [b["Name"] for b in c.list_buckets()["Buckets"]]
    for ak in ("roall", "roshared", "rwteam"):
        srv.s3().create_bucket(Bucket="victim-" + ak)
    denied(lambda: srv.s3("roall").delete_bucket(Bucket="team-new"))
    denied(lambda: srv.s3("rwteam").delete_bucket(Bucket="victim-rwteam"))
    denied(lambda: srv.s3("roshared").delete_bucket(Bucket="victim-roshared"))
    c.delete_bucket(Bucket="team-new")
    names = [b["Name"] for b in srv.s3().list_buckets()["Buckets"]]
    assert "team-new" not in names and "victim-rwteam" in names
    srv.s3("rwall").delete_bucket(Bucket="victim-roall")
    for ak in ("roshared", "rwteam"):
        srv.s3().delete_bucket(Bucket="victim-" + ak)


# ---- the keys file at start -----------------------------------------------------------------

def test_bad_keys_file_stops_the_start(tmp_path):
    cases = {
        "dup.toml": (keys_toml(KEYS) + keys_toml({"rwall": KEYS["rwall"]}), "`rwall` is given twice"),
        "root.toml": (keys_toml({baleproc.ACCESS_KEY: ("x-secret-123", "read-only", None)}),
                      "given twice"),
        "scope.toml": (keys_toml({"abc": ("12345678", "read-only", ["Bad_Name"])}),
                       "bucket pattern"),
        "many.toml": ("".join(keys_toml({f"k{i:04}": ("12345678", "read-only", None)})
                              for i in range(1001)), "at most 1000"),
    }
    for name, (text, expect) in cases.items():
        f = tmp_path / name
        f.write_text(text)
        for cmd in ("serve", "config"):
            args = ["serve"] if cmd == "serve" else ["config", "check"]
            r = bale(*args, "--keys-file", str(f), "--data", str(tmp_path / "d"),
                     "--listen", "127.0.0.1:1", "--access-key", baleproc.ACCESS_KEY,
                     "--secret-key", baleproc.SECRET_KEY)
            assert r.returncode == 1, (name, cmd, r.stderr)
            assert expect in r.stderr and r.stderr.count("\n") == 1, (name, r.stderr)
            assert r.stdout == ""
    r = bale("serve", "--keys-file", str(tmp_path / "absent.toml"), "--data", str(tmp_path / "d"))
    assert r.returncode == 1 and "absent.toml: cannot open" in r.stderr


def test_keys_in_the_config_file_and_minio_root(tmp_path):
    """`[[keys]]` in the --config file; the root key from MINIO_ROOT_USER/PASSWORD."""
    cfg = tmp_path / "bale.toml"
    cfg.write_text("cache_mb = 16\n" + keys_toml({"roshared": KEYS["roshared"]}))
    b = baleproc.Bale(extra_args=["--config", str(cfg)])
    b.args = lambda: [baleproc.bale_bin(), "serve", "--listen", f"127.0.0.1:{b.port}",
                      "--data", b.data_dirs[0], "--config", str(cfg)]
    b.env = {"MINIO_ROOT_USER": "minioroot", "MINIO_ROOT_PASSWORD": "minioroot-secret"}
    b.start()
    try:
        root = boto3_client(b.endpoint, "minioroot", "minioroot-secret")
        root.create_bucket(Bucket="shared")
        root.create_bucket(Bucket="private")
        root.put_object(Bucket="shared", Key="k", Body=b"v")
        ro = boto3_client(b.endpoint, "roshared", KEYS["roshared"][0])
        assert ro.get_object(Bucket="shared", Key="k")["Body"].read() == b"v"
        denied(lambda: ro.put_object(Bucket="shared", Key="k2", Body=b"v"))
        assert [x["Name"] for x in ro.list_buckets()["Buckets"]] == ["shared"]
    finally:
        assert b.stop() == 0
        b.cleanup()

"""Source ingest against native contract ingest of the same events, in one run.

The labelled organisation's access log is written twice: as contract JSON Lines, and as
CloudTrail records (one per event, in the shapes CloudTrail gives those operations: S3
``GetObject``/``PutObject``/``CopyObject``, IAM ``AttachGroupPolicy``, Secrets Manager
``GetSecretValue``, SageMaker ``CreateTrainingJob``…), both as JSON Lines and as gzipped
``{"Records": [...]}`` files of 10,000 records (how CloudTrail delivers them to S3). Each is
ingested in a fresh process into a fresh store, so each peak memory is its own.

Prints a table and saves ``benchmarks/results/sources.json``. Goal (issue 13): source
ingest >= 50% of native ingest's rows/s; peak memory bounded by the batch size.

Usage: ``python benchmarks/sources.py [--principals N] [--days D]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/features.py would shadow the features package for a script run from here.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_RATIO = 0.5
ENVELOPE_RECORDS = 10_000


def _cloudtrail(row: dict) -> dict:
    """One contract row as the CloudTrail record of the same operation (benchmark input only)."""
    action, resource = row["action"], row["resource"]
    record = {"eventVersion": "1.09", "eventID": row["event_id"], "eventTime": row["event_time"],
              "userIdentity": {"type": "IAMUser" if row["principal_type"] == "human" else "AssumedRole",
                               "userName": row["principal"], "arn": f"arn:aws:iam::1:user/{row['principal']}",
                               "accountId": "111122223333"},
              "awsRegion": "eu-west-1", "sourceIPAddress": row.get("source_ip") or "10.0.0.1",
              "userAgent": "aws-cli/2.17 md/command#s3api", "requestID": row["event_id"][:16],
              "eventType": "AwsApiCall", "recipientAccountId": "111122223333"}
    bucket, _, key = resource.partition(".")
    if action in ("read", "query", "join", "download"):
        record |= {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "readOnly": True,
                   "requestParameters": {"bucketName": bucket, "key": key or "object"},
                   "additionalEventData": {"bytesTransferredOut": row["bytes"]}}
    elif action == "export":
        record |= {"eventSource": "s3.amazonaws.com", "eventName": "CopyObject",
                   "requestParameters": {"bucketName": "outside", "key": key or "object",
                                         "x-amz-copy-source": f"{bucket}/{key}"},
                   "additionalEventData": {"bytesTransferredOut": row["bytes"]}}
    elif action in ("grant", "revoke"):
        record |= {"eventSource": "iam.amazonaws.com",
                   "eventName": "AttachGroupPolicy" if action == "grant" else "DetachGroupPolicy",
                   "requestParameters": {"groupName": row["grantee"], "policyArn": f"arn:aws:iam::1:policy/{bucket}"}}
    elif action == "train":
        record |= {"eventSource": "sagemaker.amazonaws.com", "eventName": "CreateTrainingJob",
                   "requestParameters": {"trainingJobName": resource, "inputDataConfig": [
                       {"dataSource": {"s3DataSource": {"s3Uri": f"s3://{r}"}}} for r in row["related"]]}}
    elif row["resource"].startswith("secret"):
        record |= {"eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
                   "requestParameters": {"secretId": resource}}
    else:
        record |= {"eventSource": "s3.amazonaws.com", "eventName": "PutObject",
                   "requestParameters": {"bucketName": bucket, "key": key or "object"},
                   "additionalEventData": {"bytesTransferredIn": row["bytes"]}}
    if row["status"] == "denied":
        record["errorCode"] = "AccessDenied"
    return record


def _write(folder: Path, principals: int, days: int) -> tuple[Path, Path, list[Path], int]:
    from blastwall.simulation import OrgSpec, write_files

    write_files(OrgSpec(principals=principals, days=days, seed=5), folder / "org", fmt="jsonl")
    contract = folder / "org" / "access_log.jsonl"
    lines = folder / "cloudtrail.jsonl"
    envelopes: list[Path] = []
    batch: list[dict] = []
    rows = 0
    with contract.open() as source, lines.open("w") as out:
        for line in source:
            record = _cloudtrail(json.loads(line))
            out.write(json.dumps(record) + "\n")
            batch.append(record)
            rows += 1
            if len(batch) == ENVELOPE_RECORDS:
                envelopes.append(_envelope(folder, len(envelopes), batch))
                batch = []
    if batch:
        envelopes.append(_envelope(folder, len(envelopes), batch))
    return contract, lines, envelopes, rows


def _envelope(folder: Path, number: int, records: list[dict]) -> Path:
    path = folder / "trail" / f"{number:05d}.json.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return path


def _child(source: str, store: str, files: list[str]) -> None:
    from blastwall.schema import init_schema
    from blastwall.store import store as open_store
    from features.ingest import ingest_file

    with open_store(f"chdb://{store}") as client:
        init_schema(client)
        begin = time.perf_counter()
        loaded = rejected = 0
        for file in files:
            summary = ingest_file(client, file, source=None if source == "contract" else source)
            loaded += summary.loaded
            rejected += summary.rejected
        seconds = time.perf_counter() - begin
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "loaded": loaded, "rejected": rejected, "peak_rss_mb": peak}))


def _run(name: str, source: str, files: list[Path], folder: Path) -> dict:
    store = folder / f"store-{name}"
    out = subprocess.run([sys.executable, __file__, "--child", source, str(store), *map(str, files)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contract, lines, envelopes, rows = _write(folder, args.principals, args.days)
        runs = {"contract": _run("contract", "contract", [contract], folder),
                "cloudtrail_jsonl": _run("jsonl", "cloudtrail", [lines], folder),
                "cloudtrail_records_gz": _run("records", "cloudtrail", envelopes, folder)}
    native = rows / runs["contract"]["seconds"]
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
              "events": rows, "runs": {}, "goal_ratio": GOAL_RATIO}
    print(f"{rows:,} events ({args.principals} principals x {args.days} days)")
    print(f"{'run':24} {'rows/s':>10} {'vs native':>9} {'loaded':>9} {'rejected':>8} {'peak MB':>8}")
    for name, figures in runs.items():
        rate = rows / figures["seconds"]
        report["runs"][name] = {**figures, "rows_per_second": round(rate), "ratio_to_native": round(rate / native, 3)}
        print(f"{name:24} {rate:>10,.0f} {rate / native:>9.2f} {figures['loaded']:>9,} {figures['rejected']:>8,} "
              f"{figures['peak_rss_mb']:>8,.0f}")
    report["goal_holds"] = all(r["ratio_to_native"] >= GOAL_RATIO for r in report["runs"].values())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sources.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"goal (source >= {GOAL_RATIO:.0%} of native): {'met' if report['goal_holds'] else 'MISSED'}")


if __name__ == "__main__":
    main()

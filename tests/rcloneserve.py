"""Real storage for the rclone tests, on 127.0.0.1:

- `RcloneWebDav`: `rclone serve webdav` over a folder, with a user and password (HTTP Basic,
  UTF-8 as Go sends and checks it) and a short --dir-cache-time, so edits show at once.
- `MotoS3`: moto's S3 server (the library AWS's own SDK tests use) with authentication on:
  keys are real IAM access keys, a wrong secret gets S3's 403 SignatureDoesNotMatch.
  Objects can be uploaded in parts, as browsers and the AWS CLI upload large files: their
  ETag is not an md5 ("<md5 of the parts' md5s>-<parts>").

Both are configured for rclone only through RCLONE_CONFIG_<NAME>_* variables (`rclone_env()`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from connectors.rclone import find_rclone
from tests.realserver import ServerProcess, free_port

PART = 5 * 1024 * 1024  # S3's smallest part but the last


def obscure(secret: str) -> str:
    """rclone's reversible encoding of a password for RCLONE_CONFIG_*_PASS (read from stdin)."""
    return subprocess.run([find_rclone(), "obscure", "-"], input=secret.encode(), capture_output=True,
                          check=True).stdout.decode().strip()


class RcloneWebDav(ServerProcess):
    def __init__(self, root: str | os.PathLike, *, username: str, password: str):
        self.root = Path(root)
        self.username, self.password = username, password
        port = free_port()
        super().__init__([find_rclone(), "serve", "webdav", str(self.root), "--addr", f"127.0.0.1:{port}",
                          "--user", username, "--pass", password, "--dir-cache-time", "10ms",
                          "--poll-interval", "0", "--read-only"],
                         port, env={"HOME": str(self.root.parent), "RCLONE_CONFIG": os.devnull})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def rclone_env(self, name: str = "COURSE", *, username: str | None = None, password: str | None = None) -> dict:
        prefix = f"RCLONE_CONFIG_{name}_"
        return {"HOME": str(self.root.parent), prefix + "TYPE": "webdav", prefix + "URL": self.url,
                prefix + "VENDOR": "other", prefix + "USER": self.username if username is None else username,
                prefix + "PASS": obscure(self.password if password is None else password)}


class MotoS3(ServerProcess):
    bucket = "course"

    def __init__(self, home: str | os.PathLike):
        self.home = str(home)
        port = free_port()
        # The first three requests (creating the IAM user, its policy and its key) go unchecked.
        super().__init__([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                         env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        self.key_id = self.secret = ""
        self.s3 = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoS3":
        import boto3
        super().start()
        iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="lecturer")
        iam.put_user_policy(UserName="lecturer", PolicyName="read-write", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="lecturer")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                               aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)
        self.s3.create_bucket(Bucket=self.bucket)
        return self

    def rclone_env(self, name: str = "COURSE", *, secret: str | None = None, key_id: str | None = None) -> dict:
        prefix = f"RCLONE_CONFIG_{name}_"
        return {"HOME": self.home, prefix + "TYPE": "s3", prefix + "PROVIDER": "Other",
                prefix + "ENDPOINT": self.url, prefix + "REGION": "us-east-1",
                prefix + "ACCESS_KEY_ID": self.key_id if key_id is None else key_id,
                prefix + "SECRET_ACCESS_KEY": self.secret if secret is None else secret}

    def publish(self, files: Mapping[str, bytes], *, multipart: tuple[str, ...] = ()) -> None:
        """Make the bucket hold exactly `files`; those named in `multipart` are uploaded in parts."""
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        for item in listed:
            if item["Key"] not in files:
                self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
        for key, content in files.items():
            if key in multipart:
                self.upload_in_parts(key, content)
            else:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=content)

    def upload_in_parts(self, key: str, content: bytes) -> str:
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, len(content), PART), 1):
            answer = self.s3.upload_part(Bucket=self.bucket, Key=key, PartNumber=number, UploadId=upload,
                                         Body=content[start:start + PART])
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                          MultipartUpload={"Parts": parts})
        return self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"]

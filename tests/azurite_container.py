"""Creates a container in Azurite, the Azure Blob emulator the tests run (Shared Key auth with
the emulator's well-known account; object_store cannot create containers).

Usage: azurite_container.py ENDPOINT CONTAINER   (ENDPOINT: http://127.0.0.1:PORT)
"""
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
endpoint, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date, version = formatdate(usegmt=True), "2021-08-06"
canonical_headers = f"x-ms-date:{date}\nx-ms-version:{version}\n"
resource = f"/{account}/{account}/{container}\nrestype:container"
to_sign = "PUT\n\n\n\n\napplication/octet-stream\n" + "\n" * 6 + canonical_headers + resource
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}/{account}/{container}?restype=container", method="PUT", data=b"",
    headers={"x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0", "Content-Type": "application/octet-stream"})
print(urllib.request.urlopen(req).status)

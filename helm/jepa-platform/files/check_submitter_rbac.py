"""`helm test` check, run in the platform image as the submitter ServiceAccount: the Role allows what
`jepa submit/status/logs/cancel/list` need and not more, and RayJobs can be listed (KubeRay installed)."""

import os
import sys

from kubernetes import client, config

NEEDED = [("ray.io", "rayjobs", "", verb) for verb in ("create", "get", "list", "watch", "patch", "delete")]
NEEDED += [("", "pods", "", "get"), ("", "pods", "", "list"), ("", "pods", "log", "get")]
if os.environ.get("JEPA_READ_RAYCLUSTERS") == "true":
    NEEDED += [("ray.io", "rayclusters", "", "get"), ("ray.io", "rayclusters", "", "list")]
FORBIDDEN = [("", "pods", "", "create"), ("", "secrets", "", "get"), ("ray.io", "rayclusters", "", "create"),
             ("rbac.authorization.k8s.io", "roles", "", "create")]


def allowed(namespace: str, group: str, resource: str, subresource: str, verb: str) -> bool:
    attributes = client.V1ResourceAttributes(namespace=namespace, group=group, resource=resource,
                                             subresource=subresource or None, verb=verb)
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=attributes))
    return bool(client.AuthorizationV1Api().create_self_subject_access_review(review).status.allowed)


def name(group: str, resource: str, subresource: str, verb: str) -> str:
    return f"{verb} {resource}{'/' + subresource if subresource else ''}{'.' + group if group else ''}"


def main() -> int:
    config.load_incluster_config()
    namespace = os.environ["JEPA_NAMESPACE"]
    missing = [name(*rule) for rule in NEEDED if not allowed(namespace, *rule)]
    extra = [name(*rule) for rule in FORBIDDEN if allowed(namespace, *rule)]
    if missing:
        print(f"the submitter may not: {', '.join(missing)}", file=sys.stderr)
    if extra:
        print(f"the submitter may, but should not: {', '.join(extra)}", file=sys.stderr)
    try:
        jobs = client.CustomObjectsApi().list_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs")
    except client.ApiException as e:
        hint = " (is the KubeRay operator installed?)" if e.status == 404 else ""
        print(f"listing rayjobs.ray.io/v1 in {namespace} failed: {e.status} {e.reason}{hint}", file=sys.stderr)
        return 1
    if missing or extra:
        return 1
    print(f"submitter rights in {namespace} are as expected; {len(jobs['items'])} RayJob(s) there")
    return 0


sys.exit(main())

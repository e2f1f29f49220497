"""The REST API: the definition table's routes, the Lambda TOKEN authorizer, request
validation, stage logging, tracing and throttling, and gateway responses rendered as RFC 9457
problem+json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from claude_jobs.api.problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX
from claude_jobs.definitions import ROUTES
from claude_jobs.resources import AUTHORIZATION_HEADER_PATTERN
from infra.components.functions import retention
from infra.components.nag import Ack, acknowledge
from infra.config import InfraConfig

PROBLEM_JSON = PROBLEM_CONTENT_TYPE


@dataclass(frozen=True)
class GatewayProblem:
    """How API Gateway answers a request it rejects before (or instead of) a function."""

    response_type: apigw.ResponseType
    status: int
    title: str
    code: str  # the problem type's last part, as the functions' problems use it
    detail: str = "$context.error.messageString"  # a JSON string literal, quotes included
    extra_headers: tuple[tuple[str, str], ...] = ()


_RT = apigw.ResponseType
_INVALID_KEY = '"Missing or invalid API key."'
_BEARER = (("WWW-Authenticate", 'Bearer realm="claude-jobs"'),)
_401 = {"status": 401, "title": "Unauthorized", "code": "unauthorized", "detail": _INVALID_KEY}
_500 = {"status": 500, "title": "Internal Server Error", "code": "internal"}

#: Every response type API Gateway can produce itself, each with a fixed status, so a body's
#: `status` always equals the response's status. Types, titles and headers match the problems
#: the functions answer with (claude_jobs.api.problems).
GATEWAY_PROBLEMS: tuple[GatewayProblem, ...] = (
    GatewayProblem(_RT.UNAUTHORIZED, **_401, extra_headers=_BEARER),  # type: ignore[arg-type]
    # A Deny from the authorizer is a 401 too: a caller cannot tell a revoked key from a
    # wrong one.
    GatewayProblem(_RT.ACCESS_DENIED, **_401, extra_headers=_BEARER),  # type: ignore[arg-type]
    GatewayProblem(_RT.EXPIRED_TOKEN, **_401, extra_headers=_BEARER),  # type: ignore[arg-type]
    GatewayProblem(_RT.INVALID_SIGNATURE, **_401, extra_headers=_BEARER),  # type: ignore[arg-type]
    GatewayProblem(_RT.INVALID_API_KEY, **_401, extra_headers=_BEARER),  # type: ignore[arg-type]
    # A REST API answers an unknown route as a missing token; to a caller it is a 404.
    GatewayProblem(
        _RT.MISSING_AUTHENTICATION_TOKEN, 404, "Not Found", "not_found", '"No such resource."'
    ),
    GatewayProblem(_RT.RESOURCE_NOT_FOUND, 404, "Not Found", "not_found"),
    GatewayProblem(_RT.WAF_FILTERED, 403, "Forbidden", "forbidden"),
    GatewayProblem(_RT.BAD_REQUEST_BODY, 422, "Unprocessable Content", "validation_error"),
    GatewayProblem(_RT.BAD_REQUEST_PARAMETERS, 422, "Unprocessable Content", "validation_error"),
    GatewayProblem(_RT.REQUEST_TOO_LARGE, 413, "Content Too Large", "payload_too_large"),
    GatewayProblem(
        _RT.UNSUPPORTED_MEDIA_TYPE, 415, "Unsupported Media Type", "unsupported_media_type"
    ),
    GatewayProblem(
        _RT.THROTTLED, 429, "Too Many Requests", "throttled", extra_headers=(("Retry-After", "1"),)
    ),
    GatewayProblem(
        _RT.QUOTA_EXCEEDED,
        429,
        "Too Many Requests",
        "throttled",
        extra_headers=(("Retry-After", "60"),),
    ),
    GatewayProblem(_RT.DEFAULT_4_XX, 400, "Bad Request", "bad_request"),
    GatewayProblem(_RT.INTEGRATION_TIMEOUT, 504, "Gateway Timeout", "gateway_timeout"),
    GatewayProblem(_RT.INTEGRATION_FAILURE, 502, "Bad Gateway", "bad_gateway"),
    GatewayProblem(_RT.AUTHORIZER_FAILURE, **_500),  # type: ignore[arg-type]
    GatewayProblem(_RT.AUTHORIZER_CONFIGURATION_ERROR, **_500),  # type: ignore[arg-type]
    GatewayProblem(_RT.API_CONFIGURATION_ERROR, **_500),  # type: ignore[arg-type]
    GatewayProblem(_RT.DEFAULT_5_XX, **_500),  # type: ignore[arg-type]
)


def problem_template(problem: GatewayProblem) -> str:
    """The mapping template of a gateway response: an RFC 9457 problem document.

    `$context.error.messageString` is already a quoted JSON string.
    """
    return (
        f'{{"type":"{TYPE_PREFIX}{problem.code}",'
        f'"title":"{problem.title}",'
        f'"status":{problem.status},'
        f'"detail":{problem.detail},'
        '"request_id":"$context.requestId"}'
    )


#: Access log line: one JSON object per request, without bodies or the Authorization header.
ACCESS_LOG_FIELDS = {
    "request_id": "$context.requestId",
    "extended_request_id": "$context.extendedRequestId",
    "request_time": "$context.requestTime",
    "http_method": "$context.httpMethod",
    "resource_path": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "response_length": "$context.responseLength",
    "response_latency_ms": "$context.responseLatency",
    "integration_latency_ms": "$context.integration.latency",
    "integration_status": "$context.integration.status",
    "source_ip": "$context.identity.sourceIp",
    "user_agent": "$context.identity.userAgent",
    "tenant_id": "$context.authorizer.tenant_id",
    "key_id": "$context.authorizer.key_id",
    "error_type": "$context.error.responseType",
    "error_message": "$context.error.message",
    "xray_trace_id": "$context.xrayTraceId",
}


#: API Gateway's name of where a request parameter is.
_LOCATION = {"query": "querystring", "header": "header"}


class JobsApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        functions: Mapping[str, lambda_.IFunction],
        authorizer: lambda_.IFunction,
    ) -> None:
        """`functions`: the function of each name the definition table's routes name."""
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{config.prefix}-api",
            description="claude-jobs HTTP API v1",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution logging needs the account's API Gateway CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel(config.api_execution_log_level),
                data_trace_enabled=False,  # never log request or response bodies (prompts)
                tracing_enabled=True,
                metrics_enabled=True,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
            ),
        )
        for problem in GATEWAY_PROBLEMS:
            headers = {"Content-Type": f"'{PROBLEM_JSON}'"}
            headers.update({name: f"'{value}'" for name, value in problem.extra_headers})
            self.api.add_gateway_response(
                f"Gw{problem.response_type.response_type}",
                type=problem.response_type,
                status_code=str(problem.status),
                response_headers=headers,
                templates={"application/json": problem_template(problem)},
            )

        self.authorizer = apigw.TokenAuthorizer(
            self,
            "Authorizer",
            handler=authorizer,
            identity_source=apigw.IdentitySource.header("Authorization"),
            # Bad shapes are refused by API Gateway itself, without invoking the function.
            validation_regex=AUTHORIZATION_HEADER_PATTERN,
            results_cache_ttl=Duration.seconds(config.authorizer_cache_seconds),
        )

        body_validator = self.api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        params_validator = self.api.add_request_validator(
            "ParamsValidator", validate_request_body=False, validate_request_parameters=True
        )
        # The gateway checks that the body is a JSON object; the function owns every field rule,
        # so a missing or invalid field gets the function's 422 with its per-field `errors`.
        job_request = self.api.add_model(
            "JobRequestModel",
            content_type="application/json",
            model_name="JobRequest",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                title="JobRequest",
                type=apigw.JsonSchemaType.OBJECT,
            ),
        )

        # The definition table's routes: each a method on its resource path, integrated with
        # the function it names, behind the authorizer unless the route is public.
        integrations: dict[str, apigw.LambdaIntegration] = {}
        resources: dict[str, apigw.IResource] = {"": self.api.root}
        self.methods: dict[tuple[str, str], apigw.Method] = {}
        for route in ROUTES:
            if route.function not in integrations:
                integrations[route.function] = apigw.LambdaIntegration(functions[route.function])
            parameters = {f"method.request.path.{name}": True for name in route.path_parameters}
            parameters |= {
                f"method.request.{_LOCATION[p.location]}.{p.name}": False for p in route.parameters
            }
            if route.authorized:
                parameters["method.request.header.Authorization"] = True
            method = self._resource(resources, route.path).add_method(
                route.method,
                integrations[route.function],
                request_validator=body_validator if route.json_body else params_validator,
                request_models={"application/json": job_request} if route.json_body else None,
                request_parameters=dict(sorted(parameters.items())),
                authorization_type=(
                    apigw.AuthorizationType.CUSTOM
                    if route.authorized
                    else apigw.AuthorizationType.NONE
                ),
                authorizer=self.authorizer if route.authorized else None,
                operation_name=route.operation,
            )
            self.methods[(route.method, route.path)] = method
            if not route.authorized:
                acknowledge(
                    method,
                    Ack(
                        "AwsSolutions-APIG4",
                        f"{route.method} {route.path} is public by contract ({route.summary}).",
                    ),
                )

        # Acknowledged after every method exists: suppressions reach existing children only.
        acknowledge(
            self.api,
            Ack(
                "AwsSolutions-IAM4",
                "API Gateway's account-level CloudWatch role uses the AWS managed policy "
                "AmazonAPIGatewayPushToCloudWatchLogs, made for exactly this role.",
                applies_to=[
                    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs"
                ],
            ),
            Ack(
                "AwsSolutions-COG4",
                "Callers authenticate with API keys checked by the Lambda TOKEN authorizer "
                "(hashed keys in DynamoDB), by design; there is no Cognito user pool.",
            ),
            Ack(
                "AwsSolutions-APIG3",
                "No WAF web ACL in this stack: stage throttling and the authorizer bound abuse; "
                "attach an account-level web ACL if the deployment requires one.",
            ),
        )

    @staticmethod
    def _resource(resources: dict[str, apigw.IResource], path: str) -> apigw.IResource:
        """The resource of `path`, made (with its parents) on first use."""
        if path not in resources:
            parent, _, part = path.rpartition("/")
            resources[path] = JobsApi._resource(resources, parent).add_resource(part)
        return resources[path]

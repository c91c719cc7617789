import { describe, expect, it } from "vitest";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { create, createFileRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { ServerReflection, type ServerReflectionRequestSchema, type ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { registerReflection } from "./reflection-service.js";

type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;

async function exchange(requests: Request[]): Promise<ServerReflectionResponse[]> {
  const transport = createRouterTransport((router) => {
    registerReflection(router, [TokenService, AdminService, RelayService]);
  });
  const client = createClient(ServerReflection, transport);
  async function* send() {
    yield* requests;
  }
  const responses: ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(send())) responses.push(res);
  return responses;
}

function decode(res: ServerReflectionResponse | undefined) {
  if (res?.messageResponse.case !== "fileDescriptorResponse") {
    throw new Error(`expected fileDescriptorResponse, got ${res?.messageResponse.case}`);
  }
  return res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/**
 * Servers (grpc-go, grpc C++, ours) send the requested file first, but a
 * FileDescriptorSet must list dependencies first. Throws if one is missing.
 */
function dependenciesFirst(files: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((f) => [f.name, f]));
  const ordered = new Set<FileDescriptorProto>();
  const visit = (file: FileDescriptorProto | undefined, name: string): void => {
    if (!file) throw new Error(`missing dependency ${name}`);
    if (ordered.has(file)) return;
    file.dependency.forEach((dep) => visit(byName.get(dep), dep));
    ordered.add(file);
  };
  files.forEach((f) => visit(f, f.name));
  return [...ordered];
}

function fileNames(res: ServerReflectionResponse | undefined): string[] {
  return decode(res).map((file) => file.name);
}

describe("ServerReflection", () => {
  it("answers a bidi stream of requests in order", async () => {
    const [list, tokenSvc, relayResp, common, unknown] = await exchange([
      { host: "localhost:8080", messageRequest: { case: "listServices", value: "" } },
      { messageRequest: { case: "fileContainingSymbol", value: "relayapi.v1.TokenService" } },
      { messageRequest: { case: "fileContainingSymbol", value: "relayapi.v1.RelayResponse" } },
      { messageRequest: { case: "fileByFilename", value: "relayapi/v1/common.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "relayapi.v1.NoSuchThing" } },
    ]);

    expect(list?.validHost).toBe("localhost:8080");
    expect(list?.originalRequest?.messageRequest.case).toBe("listServices");
    expect(list?.messageResponse.case).toBe("listServicesResponse");
    const names = list?.messageResponse.case === "listServicesResponse" ? list.messageResponse.value.service.map((s) => s.name) : [];
    expect(names.sort()).toEqual([
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "relayapi.v1.AdminService",
      "relayapi.v1.RelayService",
      "relayapi.v1.TokenService",
    ]);

    const tokenFiles = fileNames(tokenSvc);
    expect(tokenFiles[0]).toBe("relayapi/v1/token_service.proto");
    expect([...tokenFiles].sort()).toEqual([
      "google/protobuf/duration.proto",
      "google/protobuf/timestamp.proto",
      "relayapi/v1/common.proto",
      "relayapi/v1/token_service.proto",
    ]);
    expect(new Set(tokenFiles).size).toBe(tokenFiles.length);
    // What a client does with the answer: rebuild a registry and resolve the service.
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: dependenciesFirst(decode(tokenSvc)) }));
    expect(registry.getService("relayapi.v1.TokenService")?.methods.length).toBe(TokenService.methods.length);
    expect(tokenSvc?.originalRequest?.messageRequest).toEqual({
      case: "fileContainingSymbol",
      value: "relayapi.v1.TokenService",
    });

    expect(fileNames(relayResp)).toEqual(["relayapi/v1/relay_service.proto", "relayapi/v1/common.proto", "google/protobuf/timestamp.proto"]);

    expect(fileNames(common)).toEqual(["relayapi/v1/common.proto", "google/protobuf/timestamp.proto"]);

    expect(unknown?.messageResponse.case).toBe("errorResponse");
    if (unknown?.messageResponse.case === "errorResponse") {
      expect(unknown.messageResponse.value.errorCode).toBe(5);
      expect(unknown.messageResponse.value.errorMessage).toContain("relayapi.v1.NoSuchThing");
    }
  });

  it("resolves methods, nested types, enums and its own service", async () => {
    const responses = await exchange([
      { messageRequest: { case: "fileContainingSymbol", value: "relayapi.v1.AdminService.WatchUsage" } },
      { messageRequest: { case: "fileContainingSymbol", value: "relayapi.v1.TokenKind" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.reflection.v1.ServerReflection" } },
      { messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.Timestamp" } },
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
    ]);
    expect(responses.map((r) => fileNamesOrError(r))).toEqual([
      "relayapi/v1/admin_service.proto",
      "relayapi/v1/common.proto",
      "grpc/reflection/v1/reflection.proto",
      "google/protobuf/timestamp.proto",
      "error 5",
    ]);
  });
});

function fileNamesOrError(res: ServerReflectionResponse): string {
  if (res.messageResponse.case === "errorResponse") return `error ${res.messageResponse.value.errorCode}`;
  return fileNames(res)[0] ?? "";
}

/**
 * gRPC server reflection (grpc.reflection.v1.ServerReflection, and v1alpha), so tools such
 * as grpcurl can discover our services at runtime. Answers come from the
 * descriptors embedded in the generated code; the symbol and file index is
 * built once when the service is registered.
 */
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import type { DescEnum, DescExtension, DescFile, DescMessage, DescMethod, DescService, MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ServerReflection, type ServerReflectionRequest, type ServerReflectionResponseSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  type ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Answer = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];
type AnswerV1alpha = MessageInitShape<typeof ServerReflectionResponseSchemaV1alpha>["messageResponse"];
type Indexed = DescService | DescMethod | DescMessage | DescEnum | DescExtension;

interface Index {
  serviceNames: string[];
  /** Fully qualified name (no leading dot) → descriptor. */
  symbols: Map<string, Indexed>;
  /** Proto file name ("relayapi/v1/common.proto") → file. */
  files: Map<string, DescFile>;
  /** Serialized FileDescriptorProto of every indexed file. */
  encoded: Map<DescFile, Uint8Array>;
  /** Extendee full name → extensions of it. */
  extensions: Map<string, DescExtension[]>;
}

/**
 * Registers grpc.reflection.v1.ServerReflection answering for the given services, and its
 * predecessor v1alpha with the same answers (its messages are v1's field for field), for the
 * tools that still ask only v1alpha (Evans, older grpcurl and Postman), as grpc-go serves both.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const index = buildIndex([...services, ServerReflection, ServerReflectionV1alpha]);
  router.service(ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
      }
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // The same fields under another package name: answered as v1 answers them.
        const messageResponse = answer(index, req as unknown as ServerReflectionRequest) as AnswerV1alpha;
        yield { validHost: req.host, originalRequest: req, messageResponse };
      }
    },
  });
}

function buildIndex(services: readonly DescService[]): Index {
  const index: Index = {
    serviceNames: [...new Set(services.map((s) => s.typeName))],
    symbols: new Map(),
    files: new Map(),
    encoded: new Map(),
    extensions: new Map(),
  };
  const addFile = (file: DescFile): void => {
    if (index.encoded.has(file)) return;
    index.files.set(file.proto.name, file);
    index.encoded.set(file, toBinary(FileDescriptorProtoSchema, file.proto));
    file.dependencies.forEach(addFile);
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    file.services.forEach(addService);
  };
  const addService = (service: DescService): void => {
    addFile(service.file);
    index.symbols.set(service.typeName, service);
    for (const method of service.methods) {
      index.symbols.set(`${service.typeName}.${method.name}`, method);
      addMessage(method.input);
      addMessage(method.output);
    }
  };
  const addMessage = (message: DescMessage): void => {
    if (index.symbols.has(message.typeName)) return;
    index.symbols.set(message.typeName, message);
    addFile(message.file);
    message.nestedMessages.forEach(addMessage);
    message.nestedEnums.forEach(addEnum);
    message.nestedExtensions.forEach(addExtension);
  };
  const addEnum = (e: DescEnum): void => void index.symbols.set(e.typeName, e);
  const addExtension = (ext: DescExtension): void => {
    if (index.symbols.has(ext.typeName)) return;
    index.symbols.set(ext.typeName, ext);
    const list = index.extensions.get(ext.extendee.typeName) ?? [];
    index.extensions.set(ext.extendee.typeName, [...list, ext]);
  };
  services.forEach(addService);
  return index;
}

function answer(index: Index, req: ServerReflectionRequest): Answer {
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case "fileContainingSymbol": {
      const symbol = index.symbols.get(r.value.replace(/^\./, ""));
      if (!symbol) return error(Code.NotFound, `symbol not found: ${r.value}`);
      return fileWithDeps(index, symbol.kind === "rpc" ? symbol.parent.file : symbol.file);
    }
    case "fileByFilename": {
      const file = index.files.get(r.value);
      return file ? fileWithDeps(index, file) : error(Code.NotFound, `file not found: ${r.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = r.value;
      const ext = index.extensions.get(containingType)?.find((x) => x.number === extensionNumber);
      if (!ext) return error(Code.NotFound, `extension not found: ${containingType} #${extensionNumber}`);
      return fileWithDeps(index, ext.file);
    }
    case "allExtensionNumbersOfType": {
      if (index.symbols.get(r.value)?.kind !== "message") {
        return error(Code.NotFound, `message type not found: ${r.value}`);
      }
      const numbers = (index.extensions.get(r.value) ?? []).map((x) => x.number);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: numbers } };
    }
    default:
      return error(Code.InvalidArgument, "no message_request set");
  }
}

/** The file first, then its transitive dependencies, each file once. */
function fileWithDeps(index: Index, root: DescFile): Answer {
  const seen = new Set<DescFile>();
  const protos: Uint8Array[] = [];
  const visit = (file: DescFile): void => {
    if (seen.has(file)) return;
    seen.add(file);
    protos.push(index.encoded.get(file) ?? toBinary(FileDescriptorProtoSchema, file.proto));
    file.dependencies.forEach(visit);
  };
  visit(root);
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: protos } };
}

function error(code: Code, message: string): Answer {
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}

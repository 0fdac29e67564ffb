from tasks.detect.task import main

if __name__ == "__main__":
    main()
